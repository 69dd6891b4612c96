-- Accept heartbeats for one (student, material) in one atomic step.
-- Every key shares the student's partition tag (one cluster slot).
-- KEYS: 1 enrollments set, 2 pending list, 3 hot state hash, 4 the partition's dirty zset,
--       5 the partition's pending counter, 6 the student's rate-limit counter for the current
--       window, 7 the student's set of materials stored in MongoDB, 8 the student's budget
--       ledger, 9 the student's key index (export and erasure look it up instead of scanning)
-- ARGV: 1 course id, 2 dirty member, 3 due time, 4 max dirty keys and 5 max pending (the
--       partition's),
--       6 '1' to reply with the state, 7 rate limit per window (0: none), 8 window seconds,
--       9 material id, 10 max pending for this key, 11 epoch to set if the hash has none,
--       12-15 the caller's cached view (epoch, n, pending heartbeats folded, mark; '' if none),
--       16-20 a preview to store (epoch, n, pending heartbeats folded, mark, state JSON; '' if
--       none), 21-27 the student's budget (max rate, '0' when off; gap seconds; cap; slack;
--       seconds this key needs; receipt time; ledger TTL), 28.. heartbeat JSON documents,
--       stamped here with the key's grant when the budget is on. A mark is the SHA-1 of the
--       last heartbeat a view folded: a list that lost its tail (a Redis crash between two
--       fsyncs) and grew back no longer matches a view of it.
-- Returns {status} or, when asked, {status, mode, epoch, n, preview folded count or '-1',
-- '1' if MongoDB holds a stored state, base JSON, start index, mark of the list's last
-- heartbeat, heartbeats from the start index...}, where mode
-- says what the heartbeats follow: 'cache' (the caller's cached view: base JSON is ''),
-- 'preview' (a state a web process folded from the hot state and the first pending
-- heartbeats), or 'state' (the hot state, '' when none). Nothing is written unless status is
-- 'ok'. The reply never holds more heartbeats than were appended since the caller's view or
-- the preview: its cost does not grow with the backlog.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'enrollment_unknown'} end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return {'not_enrolled'} end
local FIRST = 28  -- ARGV index of the first heartbeat
local count = #ARGV - FIRST + 1
local len = redis.call('LLEN', KEYS[2])
if len + count > tonumber(ARGV[10]) then return {'key_full'} end
if tonumber(redis.call('GET', KEYS[5]) or '0') + count > tonumber(ARGV[5]) then
  return {'buffer_full'}
end
local new_key = not redis.call('ZSCORE', KEYS[4], ARGV[2])
if new_key and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then return {'buffer_full'} end
if tonumber(ARGV[7]) > 0 then  -- the last check, as it is the one that counts
  local used = redis.call('INCRBY', KEYS[6], count)
  if redis.call('TTL', KEYS[6]) < 0 then redis.call('EXPIRE', KEYS[6], ARGV[8]) end
  if used > tonumber(ARGV[7]) then
    redis.call('DECRBY', KEYS[6], count)  -- refused heartbeats do not use up the allowance
    return {'rate_limited', redis.call('TTL', KEYS[6])}
  end
end
if new_key then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2]) end
redis.call('SADD', KEYS[9], ARGV[9])
local epoch = redis.call('HGET', KEYS[3], 'e')
if not epoch then
  epoch = ARGV[11]
  redis.call('HSET', KEYS[3], 'e', epoch)
end
local n = redis.call('HGET', KEYS[3], 'n') or ''
local function holds(e, v, folded, mark)  -- does the list still hold the view's heartbeats?
  folded = tonumber(folded)
  if e ~= epoch or v ~= n or folded > len then return false end
  if folded == 0 then return mark == '' end
  return redis.sha1hex(redis.call('LINDEX', KEYS[2], folded - 1)) == mark
end
local pl = tonumber(redis.call('HGET', KEYS[3], 'pl') or '-1')
local preview_holds = pl >= 0 and redis.call('HGET', KEYS[3], 'pn') == n
  and holds(epoch, n, pl, redis.call('HGET', KEYS[3], 'pm'))
if ARGV[20] ~= '' and tonumber(ARGV[18]) > (preview_holds and pl or -1)
    and holds(ARGV[16], ARGV[17], ARGV[18], ARGV[19]) then
  redis.call('HSET', KEYS[3], 'pv', ARGV[20], 'pn', n, 'pl', ARGV[18], 'pm', ARGV[19])
  pl, preview_holds = tonumber(ARGV[18]), true
end
local cached = holds(ARGV[12], ARGV[13], ARGV[14], ARGV[15])
local stamp  -- the key's grant, appended to each heartbeat's JSON (nil: budget off)
if tonumber(ARGV[21]) > 0 then
  -- The student's budget (progress.StudentLedger is the same arithmetic): the receipt extends
  -- the observed time when within the gap, the budget grows by rate x that time up to the cap,
  -- and this key takes what it needs. Each heartbeat carries the key's cumulative grant.
  local rate, gap, cap = tonumber(ARGV[21]), tonumber(ARGV[22]), tonumber(ARGV[23])
  local now = tonumber(ARGV[26])
  local ledger = redis.call('HMGET', KEYS[8], 't', 'k')
  local last, tokens = tonumber(ledger[1]), tonumber(ledger[2])
  if not last then
    last, tokens = now, tonumber(ARGV[24])
  elseif now > last then
    if now - last <= gap then
      tokens = math.min(cap, tokens + math.floor(rate * (now - last) * 1000 + 1e-6) / 1000)
    end
    last = now
  end
  local granted = math.floor(math.max(0, math.min(tokens, tonumber(ARGV[25]))) * 1000 + 1e-6)
    / 1000
  redis.call('HSET', KEYS[8], 't', string.format('%.17g', last),
             'k', string.format('%.3f', tokens - granted))
  redis.call('EXPIRE', KEYS[8], ARGV[27])
  local total = string.format('%.3f', tonumber(redis.call('HGET', KEYS[3], 'g') or '0') + granted)
  if granted > 0 then redis.call('HSET', KEYS[3], 'g', total) end
  stamp = ',"g":["' .. epoch .. '",' .. total .. ']}'
end
for i = FIRST, #ARGV do
  local hb = ARGV[i]
  if stamp then hb = string.sub(hb, 1, -2) .. stamp end
  redis.call('RPUSH', KEYS[2], hb)
end
redis.call('INCRBY', KEYS[5], count)
if ARGV[6] ~= '1' then return {'ok'} end
local stored = tostring(redis.call('SISMEMBER', KEYS[7], ARGV[9]))
local last = redis.sha1hex(redis.call('LINDEX', KEYS[2], -1))
local shown = preview_holds and tostring(pl) or '-1'
local reply
if cached and (not preview_holds or tonumber(ARGV[14]) >= pl) then
  reply = {'ok', 'cache', epoch, n, shown, stored, '', ARGV[14], last}
elseif preview_holds then
  reply = {'ok', 'preview', epoch, n, shown, stored, redis.call('HGET', KEYS[3], 'pv'), shown, last}
else
  reply = {'ok', 'state', epoch, n, shown, stored, redis.call('HGET', KEYS[3], 'state') or '', '0',
           last}
end
for _, hb in ipairs(redis.call('LRANGE', KEYS[2], tonumber(reply[8]), -1)) do
  reply[#reply + 1] = hb
end
return reply
