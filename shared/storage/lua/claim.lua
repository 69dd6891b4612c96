-- Claim up to ARGV[3] dirty keys that are due, leasing them until ARGV[2].
-- A key whose previous lease is still recorded was claimed by a worker that never finished
-- it (it died or stalled): claiming it again is a takeover.
-- One partition of the buffer (its keys share one hash tag: one cluster slot).
-- KEYS: 1 the partition's dirty zset, 2 its leases hash.  ARGV: 1 now, 2 lease expiry, 3 limit
-- Returns {takeovers, member...}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local reply = {0}
for first = 1, #due, 1000 do  -- three commands per thousand keys (unpack's stack is bounded)
  local last = math.min(first + 999, #due)
  local leased = redis.call('HMGET', KEYS[2], unpack(due, first, last))
  local scores, leases = {}, {}
  for i = first, last do
    local j = 2 * (i - first)
    if leased[i - first + 1] then reply[1] = reply[1] + 1 end
    scores[j + 1], scores[j + 2] = ARGV[2], due[i]
    leases[j + 1], leases[j + 2] = due[i], ARGV[2]
    reply[#reply + 1] = due[i]
  end
  redis.call('ZADD', KEYS[1], 'XX', unpack(scores))
  redis.call('HSET', KEYS[2], unpack(leases))
end
return reply
