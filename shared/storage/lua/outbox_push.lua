-- Queue outbox entries, each at most once, within the outbox's bound and the students' quotas;
-- the outbox never blocks its producer. An id already queued, set aside or recorded as sent is
-- skipped (ids are deterministic, so a repeated fold or completion adds nothing). Any other entry
-- passes these gates in order; the first that stops it names the drop, counted in the stats
-- hash as `<prefix>_dropped_<reason>`:
--   kind `c` (a completion: `completed`, a webhook): room below the whole bound (`reserve_full`).
--   kind `s` (`initialized`, `terminated`): its session was let through before, or is one of the
--     first ARGV[7] new sessions of its (student, material) in ARGV[8] s (`quota_session`).
--   kinds `s` and `e`: a token of the student's bucket (`quota_student`), then room below the
--     bound minus the reserve (`full`).
-- Quotas count what a student offers: a session or a token that passed is spent even when the
-- entry is then dropped for room. The bound counts what is queued.
-- KEYS: 1 entries hash, 2 due zset, 3 dead hash, 4 stats hash, then three per entry: the
--       student's sent zset, quota hash (`t` tokens, `at` when counted), sessions zset
-- ARGV: 1 max entries, 2 now (the due time), 3 stats field prefix, 4 entries only kind `c` may
--       use, 5 tokens per minute (0: no student quota), 6 bucket size, 7 new sessions per window
--       (0: no session quota), 8 the window (s), 9 how long a session is remembered (s), then
--       four per entry: id, entry JSON, kind, session member (`<mid>|<session>`, kind `s`)
-- Returns {added, skipped, dropped}
local max, now, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local reserved, rate, burst = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local per_window, window, memory = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local size = redis.call('HLEN', KEYS[1])
local added, skipped, dropped = 0, 0, 0
local drops = {}
local tokens, counted_at = {}, {} -- per quota key, read once, written back at the end
local sessions = {} -- per sessions key: material -> sessions let through in the window

local function bucket(key)
  if tokens[key] == nil then
    local saved = redis.call('HMGET', key, 't', 'at')
    local left, at = tonumber(saved[1]), tonumber(saved[2])
    if left == nil or at == nil then
      left, at = burst, now
    end
    tokens[key] = math.min(burst, left + math.max(0, now - at) * rate / 60)
    counted_at[key] = math.max(at, now) -- a worker whose clock is behind never refills twice
  end
  return tokens[key]
end

local function material_of(member)
  return string.match(member, '^(.*)|') -- the session uuid holds no '|'
end

local function window_counts(key)
  if sessions[key] == nil then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now - memory))
    local counts = {}
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, now - window, '+inf')) do
      local material = material_of(member)
      counts[material] = (counts[material] or 0) + 1
    end
    sessions[key] = counts
  end
  return sessions[key]
end

local function session_passes(key, member)
  if redis.call('ZSCORE', key, member) then
    return true
  end
  local counts, material = window_counts(key), material_of(member)
  if (counts[material] or 0) >= per_window then
    return false
  end
  counts[material] = (counts[material] or 0) + 1
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, memory)
  return true
end

local function judge(kind, quota, session_key, member)
  if kind == 'c' then
    if size >= max then return 'reserve_full' end
    return nil
  end
  if kind == 's' and per_window > 0 and not session_passes(session_key, member) then
    return 'quota_session'
  end
  if rate > 0 then
    if bucket(quota) < 1 then return 'quota_student' end
    tokens[quota] = tokens[quota] - 1
  end
  if size >= max - reserved then return 'full' end
  return nil
end

for i = 1, (#ARGV - 9) / 4 do
  local a, k = 9 + (i - 1) * 4, 4 + (i - 1) * 3
  local id, entry, kind, member = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  if redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('HEXISTS', KEYS[3], id) == 1
      or redis.call('ZSCORE', KEYS[k + 1], id) then
    skipped = skipped + 1
  else
    local reason = judge(kind, KEYS[k + 2], KEYS[k + 3], member)
    if reason then
      drops[reason] = (drops[reason] or 0) + 1
      dropped = dropped + 1
    else
      redis.call('HSET', KEYS[1], id, entry)
      redis.call('ZADD', KEYS[2], now, id)
      size = size + 1
      added = added + 1
    end
  end
end
for key, left in pairs(tokens) do
  redis.call('HSET', key, 't', string.format('%.17g', left),
    'at', string.format('%.17g', counted_at[key]))
  -- Gone once full again: a missing bucket is a full one.
  redis.call('EXPIRE', key, math.ceil((burst - left) * 60 / rate) + 1)
end
for reason, n in pairs(drops) do
  redis.call('HINCRBY', KEYS[4], prefix .. '_dropped_' .. reason, n)
end
return {added, skipped, dropped}
