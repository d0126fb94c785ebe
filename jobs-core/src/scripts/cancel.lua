-- cancel.lua: cancel a job.
--
-- KEYS[1]  job hash              {prefix}:job:{jid}
-- KEYS[2]  job's event channel   {prefix}:events:{jid}
-- KEYS[3]  workers' cancel channel {prefix}:cancel
-- KEYS[4]  index of QUEUED jobs  {prefix}:status:QUEUED
-- KEYS[5]  index of CANCELLED jobs {prefix}:status:CANCELLED
-- KEYS[6]  retries waiting       {prefix}:delayed
-- KEYS[7]  retention schedule    {prefix}:retention
-- ARGV[1]  jid
-- ARGV[2]  reason, stored as the job's error
-- ARGV[3]  retention of a finished job, in milliseconds
--
-- A QUEUED job ends CANCELLED at once (its queue entry stays; the worker that
-- reads it acknowledges and skips it; a pending retry is dropped). A RUNNING
-- job is flagged, and its jid published to the workers, whose handler then
-- stops and records CANCELLED.
--
-- Returns {outcome, field, value, ...} (the job hash after the change), where
-- outcome is "cancelled", "requested" or "finished" (already terminal, nothing
-- written); an empty array when the job does not exist.

local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {}
end

local outcome
if status == 'QUEUED' then
  local now, now_ms = clock()
  local seq = redis.call('HGET', KEYS[1], 'seq')
  redis.call('HSET', KEYS[1], 'status', 'CANCELLED', 'end_time', now,
    'error', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZADD', KEYS[5], seq, ARGV[1])
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('ZADD', KEYS[7], now_ms + tonumber(ARGV[3]), ARGV[1])
  redis.call('PUBLISH', KEYS[2], cjson.encode(redis.call('HGETALL', KEYS[1])))
  outcome = 'cancelled'
elseif status == 'RUNNING' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  redis.call('PUBLISH', KEYS[3], ARGV[1])
  outcome = 'requested'
else
  outcome = 'finished'
end

local fields = redis.call('HGETALL', KEYS[1])
table.insert(fields, 1, outcome)
return fields
