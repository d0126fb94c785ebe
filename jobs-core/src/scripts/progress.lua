-- progress.lua: record how far a running attempt has got.
--
-- KEYS[1]  job hash              {prefix}:job:{jid}
-- KEYS[2]  job's event channel   {prefix}:events:{jid}
-- ARGV[1]  lease token
-- ARGV[2]  progress, a number from 0 to 1
--
-- Returns 1 when recorded, 2 when recorded and a cancellation has been
-- requested (the handler should stop), 0 when the job is not RUNNING under
-- this lease any more, or the lease has lapsed (nothing is written).

local state = redis.call('HMGET', KEYS[1], 'status', 'lease', 'lease_until', 'cancel')
local _, now_ms = clock()
if state[1] ~= 'RUNNING' or state[2] ~= ARGV[1]
    or not state[3] or tonumber(state[3]) < now_ms then
  return 0
end

redis.call('HSET', KEYS[1], 'progress', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PUBLISH', KEYS[2], cjson.encode(redis.call('HGETALL', KEYS[1])))

if state[4] == '1' then
  return 2
end
return 1
