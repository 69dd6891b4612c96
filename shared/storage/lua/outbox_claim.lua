-- Lease up to ARGV[3] due outbox entries until ARGV[2]: re-scored to the lease's end, so a
-- concurrent delivery job skips them and, if this one dies, the next takes them after it.
-- KEYS: 1 entries hash, 2 due zset, 3 tries hash.  ARGV: 1 now, 2 lease end, 3 limit
-- Returns {id, entry JSON, failed attempts, ...}
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local reply = {}
for _, id in ipairs(due) do
  local entry = redis.call('HGET', KEYS[1], id)
  if entry then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[2], id)
    reply[#reply + 1] = id
    reply[#reply + 1] = entry
    reply[#reply + 1] = tonumber(redis.call('HGET', KEYS[3], id) or '0')
  else
    redis.call('ZREM', KEYS[2], id)  -- erased meanwhile
  end
end
return reply
