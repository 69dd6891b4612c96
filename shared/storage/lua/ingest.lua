-- Accept heartbeats for one (student, material) in one atomic step.
-- Every key shares the student's partition tag (one cluster slot).
-- KEYS: 1 enrollments set, 2 pending list, 3 hot state hash, 4 the partition's dirty zset,
--       5 the partition's pending counter, 6 the student's rate-limit counter for the current
--       window, 7 the student's set of materials stored in MongoDB
-- ARGV: 1 course id, 2 dirty member, 3 due time, 4 max dirty keys and 5 max pending (the
--       partition's),
--       6 '1' to reply with the state, 7 rate limit per window (0: none), 8 window seconds,
--       9 material id, 10 max pending for this key, 11 epoch to set if the hash has none,
--       12-14 the caller's cached view (epoch, n, pending heartbeats folded; '' if none),
--       15-18 a preview to store (epoch, n, pending heartbeats folded, state JSON; '' if none),
--       19.. heartbeat JSON documents
-- Returns {status} or, when asked, {status, mode, epoch, n, preview folded count or '-1',
-- '1' if MongoDB holds a stored state, base JSON, heartbeats after the base...}, where mode
-- says what the heartbeats follow: 'cache' (the caller's cached view: base JSON is ''),
-- 'preview' (a state a web process folded from the hot state and the first pending
-- heartbeats), or 'state' (the hot state, '' when none). Nothing is written unless status is
-- 'ok'. The reply never holds more heartbeats than were appended since the caller's view or
-- the preview: its cost does not grow with the backlog.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'enrollment_unknown'} end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return {'not_enrolled'} end
local count = #ARGV - 18
if tonumber(ARGV[7]) > 0 then
  local used = redis.call('INCRBY', KEYS[6], count)
  if redis.call('TTL', KEYS[6]) < 0 then redis.call('EXPIRE', KEYS[6], ARGV[8]) end
  if used > tonumber(ARGV[7]) then
    redis.call('DECRBY', KEYS[6], count)  -- refused heartbeats do not use up the allowance
    return {'rate_limited', redis.call('TTL', KEYS[6])}
  end
end
local len = redis.call('LLEN', KEYS[2])
if len + count > tonumber(ARGV[10]) then return {'key_full'} end
if tonumber(redis.call('GET', KEYS[5]) or '0') + count > tonumber(ARGV[5]) then
  return {'buffer_full'}
end
if not redis.call('ZSCORE', KEYS[4], ARGV[2]) then
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then return {'buffer_full'} end
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
end
local epoch = redis.call('HGET', KEYS[3], 'e')
if not epoch then
  epoch = ARGV[11]
  redis.call('HSET', KEYS[3], 'e', epoch)
end
local n = redis.call('HGET', KEYS[3], 'n') or ''
if ARGV[18] ~= '' and ARGV[15] == epoch and ARGV[16] == n and tonumber(ARGV[17]) <= len then
  local pl = tonumber(redis.call('HGET', KEYS[3], 'pl') or '-1')
  if redis.call('HGET', KEYS[3], 'pn') ~= n or pl < tonumber(ARGV[17]) then
    redis.call('HSET', KEYS[3], 'pv', ARGV[18], 'pn', n, 'pl', ARGV[17])
  end
end
for i = 19, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('INCRBY', KEYS[5], count)
if ARGV[6] ~= '1' then return {'ok'} end
local stored = tostring(redis.call('SISMEMBER', KEYS[7], ARGV[9]))
local pl = '-1'
if redis.call('HGET', KEYS[3], 'pn') == n then pl = redis.call('HGET', KEYS[3], 'pl') end
local reply
if ARGV[12] == epoch and ARGV[13] == n and tonumber(ARGV[14]) <= len then
  reply = {'ok', 'cache', epoch, n, pl, stored, '', ARGV[14]}
elseif pl ~= '-1' then
  reply = {'ok', 'preview', epoch, n, pl, stored, redis.call('HGET', KEYS[3], 'pv'), pl}
else
  reply = {'ok', 'state', epoch, n, pl, stored, redis.call('HGET', KEYS[3], 'state') or '', '0'}
end
for _, hb in ipairs(redis.call('LRANGE', KEYS[2], tonumber(reply[8]), -1)) do
  reply[#reply + 1] = hb
end
return reply
