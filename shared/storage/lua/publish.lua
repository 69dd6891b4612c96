-- Publish the catalog only if nobody published since its version was read (the caller then
-- reads MongoDB again).
-- KEYS: 1 catalog, 2 catalog version.  ARGV: 1 version read, 2 catalog JSON
-- Returns the new version, or 0 when someone published first.
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return redis.call('INCR', KEYS[2])
