-- finish.lua: record how one or more attempts ended, atomically.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2]  retries waiting       {prefix}:delayed (zset, score = due time in ms)
-- KEYS[3]  retention schedule    {prefix}:retention (zset, score = expiry in ms;
--          member = the space-separated jids that expire then; recover.lua
--          deletes them)
-- ARGV[1]  consumer group name
-- ARGV[2]  key prefix
-- ARGV[3]  retention of a finished job, in milliseconds
-- ARGV[4]  time to live of a result, in milliseconds
-- ARGV[5]  1 to trim acknowledged entries from the queue's head after this
--          call, 0 not to: the worker asks every ~100 entries it
--          acknowledged, not every call (finding the bound is a good part
--          of a small batch's cost; recover.lua trims too)
-- ARGV[6..] groups of six, one per attempt:
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
-- it, and a finished job never changes again. An attempt that ends the job
-- is recorded in the hash's own fields (`outcome`, `end_time`, `error`; its
-- `worker` and `start_time` are already there); one after which the job is
-- queued again is appended to `history` (if its cancellation was requested
-- meanwhile, the job ends CANCELLED there instead of running again). Work
-- shared by the batch (index moves, acknowledgements, the watcher check) is
-- one command for all attempts; a change is published only on channels
-- someone is subscribed to, and looked for only while an API process keeps
-- `{prefix}:watching`.
--
-- Returns an array with one string per attempt: the job's status once it
-- was recorded (SUCCESS, ERROR, CANCELLED, or QUEUED when it will run
-- again), which is what the worker counts; or '' when the job was not this
-- lease's to change.

-- A result this small is kept in the job's hash (Redis keeps a hash of
-- values up to 64 bytes in its compact encoding, by default), when it is to
-- be kept at least as long as the job: a key per result costs more than the
-- rest of a job's finish.
local INLINE_RESULT_BYTES = 64
local prefix = ARGV[2]
local watching = anyone_watching(prefix)
local inline_results = tonumber(ARGV[4]) >= tonumber(ARGV[3])
local now, now_ms = clock()
-- A string once, not a number formatted again for every job.
local expires = string.format('%.0f', now_ms + tonumber(ARGV[3]))
local recorded, acked, channels, keys = {}, {}, {}, {}
local changed = 0
-- Members to add per status index, as (score, jid) pairs.
local moved = {QUEUED = {}, SUCCESS = {}, ERROR = {}, CANCELLED = {}}
local expiring, delayed = {}, {}

for i = 6, #ARGV, 6 do
  local id, jid, token, outcome, payload, delay =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = prefix .. ':job:' .. jid
  local s = redis.call('HMGET', key, 'status', 'lease', 'lease_until', 'seq',
    'attempts', 'version')
  local status, lease, seq = s[1], s[2], s[4]

  if status == 'RUNNING' and lease == token and tonumber(s[3] or 0) >= now_ms then
    -- A string: only a retry needs it as a number.
    local attempts = s[5]
    local version = next_count(s[6])
    -- The job's status from here.
    local ends = outcome
    if outcome == 'FAILED' then
      ends = tonumber(attempts) >= tonumber(spec_value(key, 'max_attempts')) and 'ERROR'
        or 'QUEUED'
    elseif outcome == 'RELEASE' then
      ends = 'QUEUED'
    end

    if ends == 'SUCCESS' then
      -- Its outcome (SUCCESS) and progress (1) follow from the status, and
      -- readers take them from it: two fields fewer to add per job.
      if inline_results and #payload <= INLINE_RESULT_BYTES then
        redis.call('HSET', key, 'status', ends, 'end_time', now, 'version', version,
          'result', payload)
      else
        redis.call('SET', prefix .. ':result:' .. jid, payload, 'PX', ARGV[4])
        redis.call('HSET', key, 'status', ends, 'end_time', now, 'version', version)
      end
      -- Only a job retried before can carry an earlier attempt's error.
      if attempts ~= '1' then redis.call('HDEL', key, 'error') end
    elseif ends ~= 'QUEUED' then
      redis.call('HSET', key, 'status', ends, 'end_time', now, 'outcome', outcome,
        'error', payload, 'version', version)
    else
      -- Queued again: now (RELEASE) or after the backoff (FAILED); or, when
      -- its cancellation was asked for while this attempt ran, ended
      -- CANCELLED instead, as cancel.lua ends a queued job.
      local past = redis.call('HMGET', key, 'worker', 'start_time', 'history', 'cancel')
      local number = tonumber(attempts)
      local entry = {number = number, worker = past[1], start_time = past[2],
        end_time = now, outcome = outcome, error = payload}
      if outcome == 'RELEASE' then
        entry.number = nil
        attempts = number - 1
      end
      if past[4] == '1' then ends = 'CANCELLED' end
      redis.call('HSET', key, 'status', ends, 'progress', 0, 'attempts', attempts,
        'history', with_attempt(past[3], entry), 'version', version)
      redis.call('HDEL', key, 'lease_until', 'worker')
      if ends == 'CANCELLED' then
        redis.call('HSET', key, 'end_time', now, 'error', CANCELLED_BY_REQUEST)
      elseif outcome == 'FAILED' then
        redis.call('HSET', key, 'error', payload)
        delayed[#delayed + 1] = now_ms + tonumber(delay)
        delayed[#delayed + 1] = jid
      else
        redis.call('XADD', KEYS[1], '*', 'jid', jid)
      end
    end
    if ends ~= 'QUEUED' then
      expiring[#expiring + 1] = jid
    end
    local into = moved[ends]
    into[#into + 1] = seq
    into[#into + 1] = jid
    changed = changed + 1
    if watching then
      channels[#channels + 1] = prefix .. ':events:' .. jid
      keys[#keys + 1] = key
    end
    acked[#acked + 1] = id
    recorded[#recorded + 1] = ends
  else
    -- This entry's attempt is over either way. A job that ended, or was
    -- taken again (under a new entry), needs this entry no more; a job
    -- still RUNNING under this lease, lapsed, is left to recovery.
    if status ~= 'RUNNING' or lease ~= token then
      acked[#acked + 1] = id
    end
    recorded[#recorded + 1] = ''
  end
end

if changed > 0 then
  for status, members in pairs(moved) do
    if #members > 0 then
      redis.call('ZADD', prefix .. ':status:' .. status, unpack(members))
    end
  end
  -- The batch's jobs all expire at once: one schedule entry for them all,
  -- not one each (the schedule is written far more often than read).
  -- Recovery deletes them when it is due: cheaper than a TTL on each hash,
  -- and their index entries go in the same step.
  if #expiring > 0 then redis.call('ZADD', KEYS[3], expires, table.concat(expiring, ' ')) end
  if #delayed > 0 then redis.call('ZADD', KEYS[2], unpack(delayed)) end
  publish_watched(channels, keys)
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(acked))
  if ARGV[5] == '1' then trim_acknowledged(KEYS[1], ARGV[1]) end
end

return recorded
