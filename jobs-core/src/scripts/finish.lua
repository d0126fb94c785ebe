-- finish.lua: record how one or more attempts ended, atomically.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2]  retries waiting       {prefix}:delayed (zset, score = due time in ms)
-- KEYS[3]  retention schedule    {prefix}:expiry  (zset, score = expiry in ms)
-- ARGV[1]  consumer group name
-- ARGV[2]  key prefix
-- ARGV[3]  retention of a finished job, in milliseconds
-- ARGV[4]  time to live of a result, in milliseconds
-- ARGV[5..] groups of six, one per attempt:
--           entry id, jid, lease token, outcome, payload, retry delay (ms)
--   outcome SUCCESS  payload: the result as JSON
--           FAILED   payload: the error; retried after the delay while
--                    attempts remain, else the job ends ERROR
--           ERROR    payload: the error; the job ends ERROR (no retry)
--           CANCELLED payload: the reason; the job ends CANCELLED
--           RELEASE  payload: why; the job goes back to the queue at once and
--                    the attempt is not counted (a worker shutting down)
--
-- An outcome is recorded only while the job is RUNNING under that lease token
-- and the lease has not lapsed: a worker that lost the job cannot overwrite
-- it, and a finished job never changes again. Every recorded attempt is
-- appended to the job's history. Work shared by the batch (index moves,
-- acknowledgements, the watcher check) is one command for all attempts; a
-- change is published only on channels someone is subscribed to.
--
-- Returns an array with one integer per attempt: 1 when recorded, 0 when the
-- job was not this lease's to change.

local prefix = ARGV[2]
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now_ms + tonumber(ARGV[3])
local recorded, acked, left_running, channels, keys = {}, {}, {}, {}, {}
-- Members to add per status index, as (score, jid) pairs.
local moved = {QUEUED = {}, SUCCESS = {}, ERROR = {}, CANCELLED = {}}
local expiring, delayed = {}, {}

for i = 5, #ARGV, 6 do
  local id, jid, token, outcome, payload, delay =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = prefix .. ':job:' .. jid
  local s = redis.call('HMGET', key, 'status', 'lease', 'lease_until', 'seq',
    'attempts', 'max_attempts', 'worker', 'start_time', 'history', 'version')
  local status, lease, seq = s[1], s[2], s[4]

  if status == 'RUNNING' and lease == token and tonumber(s[3] or 0) >= now_ms then
    local attempts, max_attempts = tonumber(s[5]), tonumber(s[6])
    local entry = {number = attempts, worker = s[7], start_time = s[8],
      end_time = now, outcome = outcome}
    if outcome ~= 'SUCCESS' then entry.error = payload end
    if outcome == 'FAILED' and attempts >= max_attempts then outcome = 'ERROR' end
    if outcome == 'RELEASE' then
      entry.number = nil
      attempts = attempts - 1
    end
    local history
    if s[9] and s[9] ~= '' and s[9] ~= '[]' and s[9] ~= '{}' then
      local past = cjson.decode(s[9])
      past[#past + 1] = entry
      history = cjson.encode(past)
    else
      history = '[' .. cjson.encode(entry) .. ']'
    end
    local version = tonumber(s[10]) + 1

    if outcome == 'SUCCESS' then
      redis.call('SET', prefix .. ':result:' .. jid, payload, 'PX', ARGV[4])
      redis.call('HSET', key, 'status', outcome, 'end_time', now, 'progress', 1,
        'history', history, 'version', version)
      redis.call('HDEL', key, 'lease_until', 'worker', 'error')
    elseif outcome == 'ERROR' or outcome == 'CANCELLED' then
      redis.call('HSET', key, 'status', outcome, 'end_time', now, 'error', payload,
        'history', history, 'version', version)
      redis.call('HDEL', key, 'lease_until', 'worker')
    else
      -- Back to QUEUED: now (RELEASE) or after the backoff (FAILED).
      redis.call('HSET', key, 'status', 'QUEUED', 'progress', 0, 'attempts', attempts,
        'history', history, 'version', version)
      redis.call('HDEL', key, 'lease_until', 'worker')
      if outcome == 'FAILED' then
        redis.call('HSET', key, 'error', payload)
        delayed[#delayed + 1] = now_ms + tonumber(delay)
        delayed[#delayed + 1] = jid
      else
        redis.call('XADD', KEYS[1], '*', 'jid', jid)
      end
      outcome = 'QUEUED'
    end
    if outcome ~= 'QUEUED' then
      redis.call('PEXPIRE', key, ARGV[3])
      expiring[#expiring + 1] = expires
      expiring[#expiring + 1] = jid
    end
    local into = moved[outcome]
    into[#into + 1] = seq
    into[#into + 1] = jid
    left_running[#left_running + 1] = jid
    channels[#channels + 1] = prefix .. ':events:' .. jid
    keys[#keys + 1] = key
    acked[#acked + 1] = id
    recorded[#recorded + 1] = 1
  else
    -- This entry's attempt is over either way. A job that ended, or was
    -- taken again (under a new entry), needs this entry no more; a job
    -- still RUNNING under this lease, lapsed, is left to recovery.
    if status ~= 'RUNNING' or lease ~= token then
      acked[#acked + 1] = id
    end
    recorded[#recorded + 1] = 0
  end
end

if #left_running > 0 then
  redis.call('ZREM', prefix .. ':status:RUNNING', unpack(left_running))
  for status, members in pairs(moved) do
    if #members > 0 then
      redis.call('ZADD', prefix .. ':status:' .. status, unpack(members))
    end
  end
  if #expiring > 0 then redis.call('ZADD', KEYS[3], unpack(expiring)) end
  if #delayed > 0 then redis.call('ZADD', KEYS[2], unpack(delayed)) end
  local subscribers = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
  for i = 1, #channels do
    if subscribers[2 * i] > 0 then
      redis.call('PUBLISH', channels[i], cjson.encode(redis.call('HGETALL', keys[i])))
    end
  end
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(acked))
  redis.call('XDEL', KEYS[1], unpack(acked))
end

return recorded
