-- Claim up to ARGV[3] dirty keys that are due, leasing them until ARGV[2].
-- A key whose previous lease is still recorded was claimed by a worker that never finished
-- it (it died or stalled): claiming it again is a takeover.
-- One partition of the buffer (its keys share one hash tag: one cluster slot).
-- KEYS: 1 the partition's dirty zset, 2 its leases hash.  ARGV: 1 now, 2 lease expiry, 3 limit
-- Returns {takeovers, member...}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local reply = {0}
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
  if redis.call('HSETNX', KEYS[2], member, ARGV[2]) == 0 then
    reply[1] = reply[1] + 1
    redis.call('HSET', KEYS[2], member, ARGV[2])
  end
  reply[#reply + 1] = member
end
return reply
