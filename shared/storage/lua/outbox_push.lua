-- Queue outbox entries, each at most once: an id already queued, set aside or recorded as sent
-- is skipped (ids are deterministic, so a repeated fold or completion adds nothing), and so is
-- an entry made from a state an erasure replaced (a basis version at or below the student's
-- tombstone for that material). Past the bound, new entries are dropped and counted: the outbox
-- never blocks its producer.
-- KEYS: 1 entries hash, 2 due zset, 3 dead hash, 4 stats hash, then per entry: the student's
--       sent zset, the student's entry index, the student's tombstones
-- ARGV: 1 max entries, 2 due time, 3 stats field prefix, then per entry: id, entry JSON, the
--       number n of its basis pairs, then n (material id, version) pairs
-- Returns {added, skipped, dropped}
local max = tonumber(ARGV[1])
local added, skipped, dropped = 0, 0, 0
local size = redis.call('HLEN', KEYS[1])
local a = 4
for i = 5, #KEYS, 3 do
  local id, entry, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local erased = false
  for j = 0, n - 1 do
    local tombstone = redis.call('HGET', KEYS[i + 2], ARGV[a + 3 + 2 * j])
    erased = erased or (tombstone and tonumber(ARGV[a + 4 + 2 * j]) <= tonumber(tombstone))
  end
  a = a + 3 + 2 * n
  if erased or redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('HEXISTS', KEYS[3], id) == 1
      or redis.call('ZSCORE', KEYS[i], id) then
    skipped = skipped + 1
  elseif size >= max then
    dropped = dropped + 1
  else
    redis.call('HSET', KEYS[1], id, entry)
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('SADD', KEYS[i + 1], id)
    size = size + 1
    added = added + 1
  end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[4], ARGV[3] .. '_dropped', dropped) end
return {added, skipped, dropped}
