-- Erase one key's hot state and queued heartbeats, leaving a tombstone: a version beyond any
-- fold or write still in flight (their compare-and-set and versioned upserts then fail).
-- KEYS: 1 hot state hash, 2 pending list, 3 the partition's dirty zset, 4 its leases hash,
--       5 its pending counter, 6 its poison zset, 7 its poison:why hash
-- ARGV: 1 member, 2 stored (MongoDB) version, 3 version gap, 4 tombstone TTL
-- Returns {tombstone version (string), heartbeats dropped, 1 if a hot state existed}
local current = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local version = math.max(current, tonumber(ARGV[2])) + tonumber(ARGV[3])
local queued = redis.call('LLEN', KEYS[2])
local had_state = redis.call('HEXISTS', KEYS[1], 'state')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'n', string.format('%d', version))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
if queued > 0 then redis.call('DECRBY', KEYS[5], queued) end
return {string.format('%d', version), queued, had_state}
