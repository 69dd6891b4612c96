-- Settle leased outbox entries after an attempt. An entry erased meanwhile stays erased.
-- KEYS: 1 entries hash, 2 due zset, 3 tries hash, 4 dead hash, 5 stats hash, then per entry: the
--       sent zset and the entry index of its student (a sent entry leaves the index)
-- ARGV: 1 now, 2 sent ids kept per student, 3 stats field prefix,
--       then (outcome, id, detail) per entry: outcome `sent`; `retry` (detail: next due time);
--       `dead` (detail: the entry as set aside, with its reason)
-- Returns {sent, retried, dead}
local counts = {sent = 0, retry = 0, dead = 0}
local keep = tonumber(ARGV[2])
for i = 6, #KEYS, 2 do
  local base = 4 + (i - 6) / 2 * 3
  local outcome, id, detail = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    counts[outcome] = counts[outcome] + 1
    if outcome == 'retry' then
      redis.call('ZADD', KEYS[2], detail, id)
      redis.call('HINCRBY', KEYS[3], id, 1)
    else
      redis.call('HDEL', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      if outcome == 'sent' then
        redis.call('SREM', KEYS[i + 1], id)
        if keep > 0 then
          redis.call('ZADD', KEYS[i], ARGV[1], id)
          redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -keep - 1)
        end
      else
        redis.call('HSET', KEYS[4], id, detail)
      end
    end
  end
end
redis.call('HINCRBY', KEYS[5], ARGV[3] .. '_sent', counts.sent)
redis.call('HINCRBY', KEYS[5], ARGV[3] .. '_retried', counts.retry)
redis.call('HINCRBY', KEYS[5], ARGV[3] .. '_dead', counts.dead)
return {counts.sent, counts.retry, counts.dead}
