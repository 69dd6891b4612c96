-- Mirror a student's enrollments only if none changed since MongoDB was read (every change
-- bumps the version first).
-- KEYS: 1 enrollments set, 2 its version.  ARGV: 1 version read, 2.. members (marker first)
-- Returns 1 when written, 0 when a change came in between (the next use reloads).
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
return 1
