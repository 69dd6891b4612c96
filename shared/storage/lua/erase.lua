-- Erase a student's buffer keys (all of them, or one material's) in one atomic step: the
-- erasure's cut. Each key's hot state and queued heartbeats go; the hash keeps only a tombstone
-- version beyond any fold or write still in flight (their compare-and-set and versioned upserts
-- then fail, and a later heartbeat continues from it), recorded also in the student's
-- tombstones (finish reads them); a key set aside leaves the list. Erasing the whole student
-- also deletes their viewing budget (it holds no progress, but it is theirs). Heartbeats
-- accepted after this step are kept: erasure is no ban. Every key shares the student's
-- partition tag (one cluster slot).
-- KEYS: 1 the student's key index, 2 the student's tombstones, 3 the student's set of materials
--       stored in MongoDB, 4 the partition's dirty zset, 5 its leases hash, 6 its pending
--       counter, 7 its poison zset, 8 its poison:why hash, 9 the student's budget ledger, then
--       per material: its hot state hash, its pending list
-- ARGV: 1 version gap, 2 tombstone TTL, 3 '1' when these are all the student's materials,
--       then per material: material id, its member in the partition's sets, MongoDB's version
-- Returns {'retry'} when erasing all and the index lists a material not given (indexed since
-- the caller read it: read again), else {'ok', then per material: tombstone version (string),
-- heartbeats dropped, 1 if a hot state existed}.
local gap, ttl = tonumber(ARGV[1]), ARGV[2]
if ARGV[3] == '1' then
  local given = {}
  for i = 4, #ARGV, 3 do given[ARGV[i]] = true end
  for _, material in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if not given[material] then return {'retry'} end
  end
  redis.call('DEL', KEYS[9])
end
local reply, dropped = {'ok'}, 0
for i = 0, (#ARGV - 3) / 3 - 1 do
  local material, member, stored = ARGV[4 + 3 * i], ARGV[5 + 3 * i], tonumber(ARGV[6 + 3 * i])
  local state, pending = KEYS[10 + 2 * i], KEYS[11 + 2 * i]
  local version = math.max(tonumber(redis.call('HGET', state, 'n') or '0'), stored) + gap
  local queued = redis.call('LLEN', pending)
  local had_state = redis.call('HEXISTS', state, 'state')
  local tombstone = string.format('%d', version)
  redis.call('DEL', state, pending)
  redis.call('HSET', state, 'n', tombstone)
  redis.call('EXPIRE', state, ttl)
  redis.call('HSET', KEYS[2], material, tombstone)
  redis.call('SREM', KEYS[1], material)
  redis.call('SREM', KEYS[3], material)
  redis.call('ZREM', KEYS[4], member)
  redis.call('HDEL', KEYS[5], member)
  redis.call('ZREM', KEYS[7], member)
  redis.call('HDEL', KEYS[8], member)
  dropped = dropped + queued
  reply[#reply + 1] = tombstone
  reply[#reply + 1] = queued
  reply[#reply + 1] = had_state
end
if dropped > 0 then redis.call('DECRBY', KEYS[6], dropped) end
if #reply > 1 then redis.call('EXPIRE', KEYS[2], ttl) end
return reply
