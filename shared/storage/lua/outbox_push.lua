-- Queue outbox entries, each at most once: an id already queued, set aside or recorded as sent
-- is skipped (ids are deterministic, so a repeated fold or completion adds nothing). Past the
-- bound, new entries are dropped and counted: the outbox never blocks its producer.
-- KEYS: 1 entries hash, 2 due zset, 3 dead hash, 4 stats hash, 4+i the student's sent zset
-- ARGV: 1 max entries, 2 due time, 3 stats field prefix, then (id, entry JSON) per KEYS[4+i]
-- Returns {added, skipped, dropped}
local max = tonumber(ARGV[1])
local added, skipped, dropped = 0, 0, 0
local size = redis.call('HLEN', KEYS[1])
for i = 5, #KEYS do
  local id = ARGV[4 + (i - 5) * 2]
  local entry = ARGV[5 + (i - 5) * 2]
  if redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('HEXISTS', KEYS[3], id) == 1
      or redis.call('ZSCORE', KEYS[i], id) then
    skipped = skipped + 1
  elseif size >= max then
    dropped = dropped + 1
  else
    redis.call('HSET', KEYS[1], id, entry)
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    size = size + 1
    added = added + 1
  end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[4], ARGV[3] .. '_dropped', dropped) end
return {added, skipped, dropped}
