"""Storage: Redis (the buffer and hot state, its key schema and Lua scripts) and MongoDB."""
