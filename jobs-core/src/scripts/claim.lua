-- claim.lua: take queued jobs for one worker and mark them RUNNING.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- ARGV[1]  consumer group name
-- ARGV[2]  consumer name (the worker)
-- ARGV[3]  the most entries to read when no entries are given
-- ARGV[4]  key prefix
-- ARGV[5..] pairs (entry id, jid) that a blocking XREADGROUP already
--           delivered to this consumer; when absent the script reads new
--           entries itself (XREADGROUP without BLOCK is allowed in a script)
--
-- Job hashes, indexes and event channels are derived from the prefix,
-- because the jids are only known once the stream has been read.
--
-- Returns one array per job now RUNNING for this worker:
--   {entry id, field, value, field, value, ...} (the job hash after the change).
-- Entries whose job is no longer QUEUED (cancelled, or gone) are acknowledged
-- and deleted, and left out of the reply.

local prefix = ARGV[4]
local entries = {}

if #ARGV > 4 then
  for i = 5, #ARGV, 2 do
    entries[#entries + 1] = {ARGV[i], ARGV[i + 1]}
  end
else
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2],
    'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields = entry[2]
      local jid = nil
      for i = 1, #fields, 2 do
        if fields[i] == 'jid' then jid = fields[i + 1] end
      end
      entries[#entries + 1] = {entry[1], jid}
    end
  end
end

local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local claimed = {}

for _, e in ipairs(entries) do
  local id, jid = e[1], e[2]
  local key = jid and (prefix .. ':job:' .. jid)
  local status = key and redis.call('HGET', key, 'status')
  if status == 'QUEUED' then
    local seq = redis.call('HGET', key, 'seq')
    redis.call('HSET', key, 'status', 'RUNNING', 'start_time', now,
      'worker', ARGV[2], 'progress', 0)
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HINCRBY', key, 'version', 1)
    redis.call('ZREM', prefix .. ':status:QUEUED', jid)
    redis.call('ZADD', prefix .. ':status:RUNNING', seq, jid)
    local fields = redis.call('HGETALL', key)
    redis.call('PUBLISH', prefix .. ':events:' .. jid, cjson.encode(fields))
    table.insert(fields, 1, id)
    claimed[#claimed + 1] = fields
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
  end
end

return claimed
