-- finish.lua: record the outcome of one or more attempts, atomically.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- ARGV[1]  consumer group name
-- ARGV[2]  key prefix
-- ARGV[3..] groups of five, one per job:
--           entry id, jid, attempt, outcome, payload
--           outcome is SUCCESS (payload: the result as JSON), ERROR (payload:
--           the error message) or CANCELLED (payload: the reason)
--
-- An outcome is recorded only while the job is RUNNING under that same
-- attempt: a worker that no longer holds the job cannot overwrite it, and a
-- finished job never changes again.
--
-- Returns an array with one integer per job: 1 when the outcome was recorded,
-- 0 when the job was not this attempt's to finish.

local prefix = ARGV[2]
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local recorded = {}

for i = 3, #ARGV, 5 do
  local id, jid, attempt, outcome, payload =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = prefix .. ':job:' .. jid
  local state = redis.call('HMGET', key, 'status', 'attempts', 'seq')
  local status, attempts, seq = state[1], state[2], state[3]

  if status == 'RUNNING' and attempts == attempt then
    if outcome == 'SUCCESS' then
      redis.call('SET', prefix .. ':result:' .. jid, payload)
      redis.call('HSET', key, 'status', outcome, 'end_time', now, 'progress', 1)
    else
      redis.call('HSET', key, 'status', outcome, 'end_time', now, 'error', payload)
    end
    redis.call('HINCRBY', key, 'version', 1)
    redis.call('ZREM', prefix .. ':status:RUNNING', jid)
    redis.call('ZADD', prefix .. ':status:' .. outcome, seq, jid)
    redis.call('PUBLISH', prefix .. ':events:' .. jid,
      cjson.encode(redis.call('HGETALL', key)))
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    recorded[#recorded + 1] = 1
  else
    -- A job that has ended (or vanished) needs its entry no more; a job still
    -- RUNNING under another attempt keeps its entry for that attempt.
    if status ~= 'RUNNING' and status ~= 'QUEUED' then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
    end
    recorded[#recorded + 1] = 0
  end
end

return recorded
