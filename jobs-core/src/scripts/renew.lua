-- renew.lua: extend the leases a worker holds.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- ARGV[1]  consumer group name
-- ARGV[2]  consumer name (the worker)
-- ARGV[3]  key prefix
-- ARGV[4]  lease length in milliseconds
-- ARGV[5..] triples (entry id, jid, lease token), one per job held
--
-- A lease is extended only while the job is RUNNING under that token and the
-- lease has not lapsed. The entry is re-claimed by the same consumer, which
-- resets its idle time, so recovery (XAUTOCLAIM by idle time) leaves it be.
--
-- Returns one integer per job: 1 renewed, 2 renewed and its cancellation was
-- requested, 0 lost (the worker must stop it and write nothing more).

local prefix = ARGV[3]
local _, now_ms = clock()
local until_ms = string.format('%.0f', now_ms + tonumber(ARGV[4]))
local replies = {}

for i = 5, #ARGV, 3 do
  local id, jid, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = prefix .. ':job:' .. jid
  local s = redis.call('HMGET', key, 'status', 'lease', 'lease_until', 'cancel')
  if s[1] == 'RUNNING' and s[2] == token and s[3] and tonumber(s[3]) >= now_ms then
    redis.call('HSET', key, 'lease_until', until_ms)
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    replies[#replies + 1] = (s[4] == '1') and 2 or 1
  else
    replies[#replies + 1] = 0
  end
end

return replies
