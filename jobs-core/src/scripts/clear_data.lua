-- clear_data.lua: delete the dataset behind /data, and count its records,
-- in one step. A script, not a transaction: out of memory, Redis refuses
-- every command queued in a transaction, but runs a script's deletes, so a
-- clear can still free the memory then.
--
-- KEYS[1]  records               {prefix}:data:records (hash, id -> JSON)
-- KEYS[2]  load order            {prefix}:data:order (zset)
--
-- Returns how many records there were.

local count = redis.call('ZCARD', KEYS[2])
redis.call('UNLINK', KEYS[1], KEYS[2])
return count
