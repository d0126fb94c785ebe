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
-- appended to the job's history.
--
-- Returns an array with one integer per attempt: 1 when recorded, 0 when the
-- job was not this lease's to change.

local prefix = ARGV[2]
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local recorded = {}

local function move(jid, seq, from, to)
  redis.call('ZREM', prefix .. ':status:' .. from, jid)
  redis.call('ZADD', prefix .. ':status:' .. to, seq, jid)
end

for i = 5, #ARGV, 6 do
  local id, jid, token, outcome, payload, delay =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local key = prefix .. ':job:' .. jid
  local s = redis.call('HMGET', key, 'status', 'lease', 'lease_until', 'seq',
    'attempts', 'max_attempts', 'worker', 'start_time', 'history')
  local status, lease, lease_until, seq = s[1], s[2], tonumber(s[3]), s[4]

  if status == 'RUNNING' and lease == token and lease_until and lease_until >= now_ms then
    local attempts, max_attempts = tonumber(s[5]), tonumber(s[6])
    local history = cjson.decode(s[9] or '[]')
    local entry = {number = attempts, worker = s[7], start_time = s[8],
      end_time = now, outcome = outcome}
    if outcome ~= 'SUCCESS' then entry.error = payload end
    if outcome == 'FAILED' and attempts >= max_attempts then outcome = 'ERROR' end
    if outcome == 'RELEASE' then
      entry.number = nil
      redis.call('HINCRBY', key, 'attempts', -1)
    end
    history[#history + 1] = entry
    redis.call('HSET', key, 'history', cjson.encode(history))
    redis.call('HDEL', key, 'lease_until', 'worker')

    if outcome == 'SUCCESS' or outcome == 'ERROR' or outcome == 'CANCELLED' then
      if outcome == 'SUCCESS' then
        redis.call('SET', prefix .. ':result:' .. jid, payload, 'PX', ARGV[4])
        redis.call('HSET', key, 'status', outcome, 'end_time', now, 'progress', 1)
        redis.call('HDEL', key, 'error')
      else
        redis.call('HSET', key, 'status', outcome, 'end_time', now, 'error', payload)
      end
      redis.call('PEXPIRE', key, ARGV[3])
      redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[3]), jid)
      move(jid, seq, 'RUNNING', outcome)
    else
      -- Back to QUEUED: now (RELEASE) or after the backoff (FAILED).
      redis.call('HSET', key, 'status', 'QUEUED', 'progress', 0)
      if outcome == 'FAILED' then
        redis.call('HSET', key, 'error', payload)
        redis.call('ZADD', KEYS[2], now_ms + tonumber(delay), jid)
      else
        redis.call('XADD', KEYS[1], '*', 'jid', jid)
      end
      move(jid, seq, 'RUNNING', 'QUEUED')
    end
    redis.call('HINCRBY', key, 'version', 1)
    redis.call('PUBLISH', prefix .. ':events:' .. jid,
      cjson.encode(redis.call('HGETALL', key)))
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    recorded[#recorded + 1] = 1
  else
    -- This entry's attempt is over either way. A job that ended, or was
    -- taken again (under a new entry), needs this entry no more.
    if status ~= 'RUNNING' or lease ~= token then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
    end
    recorded[#recorded + 1] = 0
  end
end

return recorded
