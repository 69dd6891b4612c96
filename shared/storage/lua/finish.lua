-- After MongoDB acknowledged state number ARGV[2]: the key is clean unless it changed since,
-- in which case it becomes due again at ARGV[3]. A key that was set aside is stored now: it
-- leaves the partition's poison set. A state at or below the key's erasure tombstone holds
-- erased heartbeats: then nothing is marked (the erasure already made the key clean and took
-- it off the poison set, and its hot state and stored flag must not come back).
-- KEYS: 1 the partition's dirty zset, 2 its leases hash, 3 hot state hash, 4 pending list, 5 the
--       student's set of materials stored in MongoDB, 6 the student's tombstones, 7 the
--       student's key index, 8 the partition's poison zset, 9 its poison:why hash
-- ARGV: 1 member, 2 written n, 3 next due time, 4 hot state TTL, 5 '1' if completion recorded,
--       6 material id
local tombstone = redis.call('HGET', KEYS[6], ARGV[6])
if tombstone and tonumber(ARGV[2]) <= tonumber(tombstone) then
  local held = tonumber(redis.call('HGET', KEYS[3], 'n') or '')
  if held and held <= tonumber(tombstone) and redis.call('LLEN', KEYS[4]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[2], ARGV[1])
    if redis.call('ZREM', KEYS[8], ARGV[1]) == 1 then redis.call('HDEL', KEYS[9], ARGV[1]) end
    redis.call('SREM', KEYS[7], ARGV[6])
  end
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[6])
redis.call('SADD', KEYS[7], ARGV[6])
if redis.call('ZREM', KEYS[8], ARGV[1]) == 1 then  -- a why is only ever beside its member
  redis.call('HDEL', KEYS[9], ARGV[1])
end
if ARGV[5] == '1' then redis.call('HSET', KEYS[3], 'cq', '1') end
if redis.call('HGET', KEYS[3], 'n') == ARGV[2] and redis.call('LLEN', KEYS[4]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return 1
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 0
