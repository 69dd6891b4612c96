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
--       seconds this key needs; receipt time; ledger TTL), 28-29 the key's grant the need
--       already counts (the epoch of the caller's state and its stamp in that epoch; '' and 0
--       when the caller knew no state; 28 '' with 29 '-' when the need is net of every grant),
--       30.. heartbeat JSON documents, stamped here with the key's grant when the budget is on.
-- Returns {status} or, when asked, {status, the key's view (view.lua's `view_reply`)...}.
-- Nothing is written unless status is 'ok'. Loaded after view.lua (scripts.py prepends it).
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then  -- then, whether it is mirrored at all
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'enrollment_unknown'} end
  return {'not_enrolled'}
end
local FIRST = 30  -- ARGV index of the first heartbeat
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
  -- A counter above `count` was there before: this script gave it its TTL when it made it.
  if used == count and redis.call('TTL', KEYS[6]) < 0 then
    redis.call('EXPIRE', KEYS[6], ARGV[8])
  end
  if used > tonumber(ARGV[7]) then
    redis.call('DECRBY', KEYS[6], count)  -- refused heartbeats do not use up the allowance
    return {'rate_limited', redis.call('TTL', KEYS[6])}
  end
end
if new_key then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2]) end
local k = key_of(KEYS[3], KEYS[2], len)
if not k.epoch then
  -- The key index gets the material with the epoch: only the erasure takes either away, both
  -- in one step (a hash with an epoch is listed; a hash expires or is erased whole).
  k.epoch = ARGV[11]
  redis.call('HSET', KEYS[3], 'e', k.epoch)
  redis.call('SADD', KEYS[9], ARGV[9])
end
local epoch, n = k.epoch, k.n
local pl, preview_holds = preview_of(k)
if ARGV[20] ~= '' and tonumber(ARGV[18]) > (preview_holds and pl or -1)
    and view_holds(k, ARGV[16], ARGV[17], ARGV[18], ARGV[19]) then
  redis.call('HSET', KEYS[3], 'pv', ARGV[20], 'pn', n, 'pl', ARGV[18], 'pm', ARGV[19])
  pl, preview_holds = tonumber(ARGV[18]), true
end
local cached = view_holds(k, ARGV[12], ARGV[13], ARGV[14], ARGV[15])
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
  -- The need counts the grants the caller's state had seen; take off those it had not (made
  -- through another process, a batch, or before this process knew the key), so a state that
  -- is behind, or none, never draws budget a second time for seconds already granted.
  local need = tonumber(ARGV[25])
  if ARGV[29] ~= '-' then
    local seen = (ARGV[28] == epoch) and tonumber(ARGV[29]) or 0
    need = need - math.max(0, tonumber(k.g or '0') - seen)
  end
  local granted = math.floor(math.max(0, math.min(tokens, need)) * 1000 + 1e-6) / 1000
  redis.call('HSET', KEYS[8], 't', string.format('%.17g', last),
             'k', string.format('%.3f', tokens - granted))
  redis.call('EXPIRE', KEYS[8], ARGV[27])
  local total = string.format('%.3f', tonumber(k.g or '0') + granted)
  if granted > 0 then redis.call('HSET', KEYS[3], 'g', total) end
  stamp = ',"g":["' .. epoch .. '",' .. total .. ']}'
end
local hbs = {}
for i = FIRST, #ARGV do
  local hb = ARGV[i]
  if stamp then hb = string.sub(hb, 1, -2) .. stamp end
  hbs[#hbs + 1] = hb
end
for i = 1, #hbs, 1000 do  -- one RPUSH per thousand (unpack's stack is bounded)
  redis.call('RPUSH', KEYS[2], unpack(hbs, i, math.min(i + 999, #hbs)))
end
if count > 0 then k.last = redis.sha1hex(hbs[#hbs]) end  -- the reply's mark, without a LINDEX
redis.call('INCRBY', KEYS[5], count)
if ARGV[6] ~= '1' then return {'ok'} end
local stored = tostring(redis.call('SISMEMBER', KEYS[7], ARGV[9]))
k.len = len + count
return view_reply({'ok'}, k, stored, pl, preview_holds, cached, ARGV[14])
