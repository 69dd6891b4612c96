-- Read one (student, material) for a status: what ingest.lua replies, without appending.
-- KEYS: 1 pending list, 2 hot state hash, 3 the student's set of materials stored in MongoDB
-- ARGV: 1 material id, 2-5 the caller's cached view (epoch, n, pending heartbeats folded, mark)
-- Returns the key's view (view.lua's `view_reply`; epoch '' when the key has no hash).
-- Loaded after view.lua (scripts.py prepends it).
local k = key_of(KEYS[2], KEYS[1], redis.call('LLEN', KEYS[1]))
k.epoch = k.epoch or ''
local stored = tostring(redis.call('SISMEMBER', KEYS[3], ARGV[1]))
local pl, preview_holds = preview_of(k)
local cached = view_holds(k, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return view_reply({}, k, stored, pl, preview_holds, cached, ARGV[4])
