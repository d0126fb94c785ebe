-- create.lua: save a new job and queue its id, atomically; or, for a repeated
-- idempotency key, return the job first created with it.
--
-- KEYS[1]  job hash              {prefix}:job:{jid}
-- KEYS[2]  queue stream          {prefix}:queue
-- KEYS[3]  index of all jobs     {prefix}:index        (zset, score = seq)
-- KEYS[4]  creation counter      {prefix}:seq          (string)
-- KEYS[5]  index of QUEUED jobs  {prefix}:status:QUEUED (zset, score = seq)
-- KEYS[6]  idempotency record    {prefix}:idem:{key}   (hash; unused when ARGV[8] is "")
-- ARGV[1]  jid
-- ARGV[2]  start
-- ARGV[3]  end
-- ARGV[4]  kind
-- ARGV[5]  params as a JSON object, or "" for none
-- ARGV[6]  max attempts
-- ARGV[7]  run timeout in milliseconds
-- ARGV[8]  idempotency key, or "" for none
-- ARGV[9]  how long an idempotency key is remembered, in milliseconds
-- ARGV[10] key prefix
-- ARGV[11] the submitter's W3C traceparent, or "" for none; not part of the
--          idempotency fingerprint (a retry may come from another trace)
--
-- Returns {outcome, values}: "created" with {create_time, seq} (the caller
-- knows the rest), "existing" with {field, value, ...} of the job first
-- created under the same idempotency key, or "mismatch" (and nothing) when
-- that key was used with other parameters. Times are microseconds since the
-- Unix epoch on Redis's clock.

local fingerprint
if ARGV[8] ~= '' then
  fingerprint = redis.sha1hex(table.concat(
    {ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]}, '\n'))
  local seen = redis.call('HMGET', KEYS[6], 'jid', 'fingerprint')
  if seen[1] then
    if seen[2] ~= fingerprint then
      return {'mismatch', {}}
    end
    local fields = redis.call('HGETALL', ARGV[10] .. ':job:' .. seen[1])
    -- A job past its retention is gone; the key then creates a new one.
    if #fields > 0 then
      return {'existing', fields}
    end
  end
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('DUPLICATE job ' .. ARGV[1] .. ' already exists')
end

local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
local seq = redis.call('INCR', KEYS[4])

redis.call('HSET', KEYS[1],
  'jid', ARGV[1], 'status', 'QUEUED', 'start', ARGV[2], 'end', ARGV[3],
  'kind', ARGV[4], 'params', ARGV[5], 'create_time', now,
  'attempts', 0, 'max_attempts', ARGV[6], 'timeout_ms', ARGV[7],
  'lease', 0, 'progress', 0, 'version', 1, 'seq', seq)
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'traceparent', ARGV[11])
end
redis.call('ZADD', KEYS[3], seq, ARGV[1])
redis.call('ZADD', KEYS[5], seq, ARGV[1])
redis.call('XADD', KEYS[2], '*', 'jid', ARGV[1])

if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[6], 'jid', ARGV[1], 'fingerprint', fingerprint)
  redis.call('PEXPIRE', KEYS[6], ARGV[9])
end

return {'created', {now, seq}}
