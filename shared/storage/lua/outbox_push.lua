-- Queue outbox entries, each at most once, within the outbox's bound and the students' quotas;
-- the outbox never blocks its producer. Each entry meets these gates in order:
--   1. skipped (counted as such, nothing written): an entry made from a state an erasure
--      replaced (a basis version at or below the student's tombstone for that material), or an
--      id already queued, set aside or recorded as sent (ids are deterministic, so a repeated
--      fold or completion adds nothing).
--   2. dropped, the first gate that stops it naming the drop, counted in the stats hash as
--      `<prefix>_dropped_<reason>`:
--      kind `c` (a completion: `completed`, a webhook): room below the whole bound
--        (`reserve_full`).
--      kind `s` (`initialized`, `terminated`): its session was let through before, or is one
--        of the first ARGV[7] new sessions of its (student, material) in ARGV[8] s
--        (`quota_session`).
--      kinds `s` and `e`: a token of the student's bucket (`quota_student`), then room below
--        the bound minus the reserve (`full`).
-- Why the erasure's check comes before the quotas: an entry it refuses would never be queued,
-- so it must spend nothing: a session or a token spent on it would be taken from what the
-- student watches after the erasure, and would write the erased material's session id back
-- into the student's quota keys, which the erasure has removed (or is about to remove) as the
-- student's data. Quotas count what a student offers that could be queued: a session or a
-- token that passed is spent even when the entry is then dropped for room. The bound counts
-- what is queued. A queued entry's id goes into the student's entry index with it.
-- KEYS: 1 entries hash, 2 due zset, 3 dead hash, 4 stats hash, then five per entry: the
--       student's sent zset, entry index, erasure tombstones, quota hash (`t` tokens, `at` when
--       counted), sessions zset
-- ARGV: 1 max entries, 2 now (the due time), 3 stats field prefix, 4 entries only kind `c` may
--       use, 5 tokens per minute (0: no student quota), 6 bucket size, 7 new sessions per window
--       (0: no session quota), 8 the window (s), 9 how long a session is remembered (s), then
--       per entry: id, entry JSON, kind, session member (`<mid>|<session>`, kind `s`), the
--       number n of its basis pairs, then n (material id, version) pairs
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

local function erased(tombstones, a, n) -- is a basis pair at or below the student's tombstone?
  for j = 0, n - 1 do
    local tombstone = redis.call('HGET', tombstones, ARGV[a + 2 * j])
    if tombstone and tonumber(ARGV[a + 1 + 2 * j]) <= tonumber(tombstone) then return true end
  end
  return false
end

local a, k = 10, 5
while a <= #ARGV do
  local id, entry, kind, member = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local n = tonumber(ARGV[a + 4])
  local sent, index, tombstones, quota, session_key = KEYS[k], KEYS[k + 1], KEYS[k + 2],
    KEYS[k + 3], KEYS[k + 4]
  if erased(tombstones, a + 5, n) or redis.call('HEXISTS', KEYS[1], id) == 1
      or redis.call('HEXISTS', KEYS[3], id) == 1 or redis.call('ZSCORE', sent, id) then
    skipped = skipped + 1
  else
    local reason = judge(kind, quota, session_key, member)
    if reason then
      drops[reason] = (drops[reason] or 0) + 1
      dropped = dropped + 1
    else
      redis.call('HSET', KEYS[1], id, entry)
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('SADD', index, id)
      size = size + 1
      added = added + 1
    end
  end
  a, k = a + 5 + 2 * n, k + 5
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
