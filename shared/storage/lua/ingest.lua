-- Accept heartbeats for one (student, material) in one atomic step.
-- KEYS: 1 enrollments set, 2 pending list, 3 hot state hash, 4 dirty zset, 5 pending counter,
--       6 the student's rate-limit counter for the current window, 7 the student's set of
--       materials stored in MongoDB
-- ARGV: 1 course id, 2 dirty member, 3 due time, 4 max dirty keys, 5 max pending,
--       6 '1' to reply with the state, 7 rate limit per window (0: none), 8 window seconds,
--       9 material id, 10.. heartbeat JSON documents
-- Returns {status} or, when asked, {status, hot state JSON or '', '1' if MongoDB holds a
-- stored state for it, pending heartbeats...}; nothing is written unless status is 'ok'.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'enrollment_unknown'} end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return {'not_enrolled'} end
local n = #ARGV - 9
if tonumber(ARGV[7]) > 0 then
  local used = redis.call('INCRBY', KEYS[6], n)
  if redis.call('TTL', KEYS[6]) < 0 then redis.call('EXPIRE', KEYS[6], ARGV[8]) end
  if used > tonumber(ARGV[7]) then
    redis.call('DECRBY', KEYS[6], n)  -- refused heartbeats do not use up the allowance
    return {'rate_limited', redis.call('TTL', KEYS[6])}
  end
end
if tonumber(redis.call('GET', KEYS[5]) or '0') + n > tonumber(ARGV[5]) then
  return {'buffer_full'}
end
if not redis.call('ZSCORE', KEYS[4], ARGV[2]) then
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then return {'buffer_full'} end
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
end
for i = 10, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('INCRBY', KEYS[5], n)
if ARGV[6] ~= '1' then return {'ok'} end
local stored = redis.call('SISMEMBER', KEYS[7], ARGV[9])
local reply = {'ok', redis.call('HGET', KEYS[3], 'state') or '', tostring(stored)}
for _, hb in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do reply[#reply + 1] = hb end
return reply
