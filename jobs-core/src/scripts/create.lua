-- create.lua: save new jobs and queue their ids, atomically; or, for a
-- repeated idempotency key, return the job first created with it. One call
-- takes a batch (one job for CreateJob, many for CreateJobs): every
-- idempotency key is checked before anything is written, so a batch with a
-- key reused for a different job stores nothing.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2]  creation counter      {prefix}:seq          (string)
-- KEYS[3]  index of QUEUED jobs  {prefix}:status:QUEUED (zset, score = seq)
-- then for job i (from 0), two keys:
-- KEYS[4+2i]  job hash              {prefix}:job:{jid}
-- KEYS[5+2i]  idempotency record    {prefix}:idem:{key} (unused when its key is "")
-- and, after the jobs' keys, optionally:
-- KEYS[4+2n]  idempotency record of the whole batch, when it was submitted
--          under one key (REST's array under one Idempotency-Key; its jobs
--          carry {key}#{i}): its fingerprint covers every job and their
--          number, so the key cannot replay some jobs of another batch and
--          create the rest, nor serve a single job too
-- ARGV[1]  key prefix
-- ARGV[2]  how long an idempotency key is remembered, in milliseconds
-- then for job i, nine values from ARGV[3+9i]:
--   jid, start, end, kind, params as a JSON object (or "" for none),
--   max attempts, run timeout in milliseconds, idempotency key (or "" for
--   none), the submitter's W3C traceparent (or "" for none; not part of the
--   idempotency fingerprint: a retry may come from another trace)
--
-- Returns {"ok", create_time, reply, ...} when every key fits, with one
-- reply per job, in order: the seq of a job created (an integer: the
-- caller knows the rest), or {field, value, ...} of the job first created
-- under the same idempotency key (which may be an earlier job of the same
-- batch). One value per created job, not a nested pair: parsing the reply
-- is a good part of what a create costs the API.
-- Returns {"mismatch", "i"} (i from 0), and writes nothing, when job i's key
-- was used with other parameters; {"mismatch", "batch"} when the batch's
-- key was used for another batch, or for a single job. Times are microseconds since the Unix
-- epoch on Redis's clock.

local PER_JOB = 9
local count = (#ARGV - 2) / PER_JOB

local function arg(i, n)
  return ARGV[2 + i * PER_JOB + n]
end

local function fingerprint(i)
  return redis.sha1hex(table.concat(
    {arg(i, 2), arg(i, 3), arg(i, 4), arg(i, 5), arg(i, 6), arg(i, 7)}, '\n'))
end

-- First pass: refuse the batch before any write if a key is taken by
-- another submission, in Redis or earlier in this batch.
local batch_key = KEYS[4 + 2 * count]
local batch_print, batch_seen
-- Every job's fingerprint, when the batch has a key: computed once, for the
-- batch's and for the jobs' own checks.
local job_prints
if batch_key then
  job_prints = {}
  local parts = {'batch'}
  for i = 0, count - 1 do
    job_prints[i] = fingerprint(i)
    parts[#parts + 1] = job_prints[i]
  end
  batch_print = redis.sha1hex(table.concat(parts, '\n'))
  batch_seen = redis.call('HGET', batch_key, 'fingerprint')
  if batch_seen and batch_seen ~= batch_print then
    return {'mismatch', 'batch'}
  end
end
local prints = {}
local in_batch = {}
for i = 0, count - 1 do
  local key = arg(i, 8)
  if key ~= '' then
    prints[i] = job_prints and job_prints[i] or fingerprint(i)
    local earlier = in_batch[key]
    if earlier then
      if earlier ~= prints[i] then
        return {'mismatch', tostring(i)}
      end
    else
      in_batch[key] = prints[i]
      local seen = redis.call('HMGET', KEYS[5 + 2 * i], 'jid', 'fingerprint')
      if seen[1] and seen[2] ~= prints[i] then
        return {'mismatch', tostring(i)}
      end
    end
  end
end

-- A new job's hash must not exist yet. The jids are random, so this only
-- guards against a broken generator, but it does so for the whole batch
-- before anything is written.
local job_keys = {}
for i = 0, count - 1 do
  job_keys[i + 1] = KEYS[4 + 2 * i]
end
if redis.call('EXISTS', unpack(job_keys)) > 0 then
  for i = 0, count - 1 do
    if redis.call('EXISTS', job_keys[i + 1]) == 1 then
      return redis.error_reply('DUPLICATE job ' .. arg(i, 1) .. ' already exists')
    end
  end
end

local now = clock()
local replies = {'ok', now}
-- One counter step and one index write for the whole batch; a job
-- that turns out to exist already (its idempotency key) leaves its seq
-- unused, which only makes a gap.
local seq = redis.call('INCRBY', KEYS[2], string.format('%d', count)) - count
local indexed = {}

local first_jid
for i = 0, count - 1 do
  local job_key = KEYS[4 + 2 * i]
  local idem_key = KEYS[5 + 2 * i]
  local jid = arg(i, 1)
  local existing, seen
  if prints[i] then
    seen = redis.call('HGET', idem_key, 'jid')
    -- A job past its retention is gone; its key then creates a new one.
    if seen then
      local fields = redis.call('HGETALL', ARGV[1] .. ':job:' .. seen)
      if #fields > 0 then
        existing = fields
      end
    end
  end

  if i == 0 then first_jid = existing and seen or jid end
  if existing then
    replies[#replies + 1] = existing
  else
    seq = seq + 1
    local seq_text = string.format('%d', seq)
    -- What never changes is one `spec` field (see SPEC_FIELDS in
    -- record.rs for the order); fields at their zero value (attempts,
    -- lease, progress) are left out and the readers default them: a
    -- shorter hash is cheaper for every later read and change.
    local fields = {'status', 'QUEUED', 'version', '1', 'seq', seq_text, 'jid', jid,
      'spec', table.concat({arg(i, 2), arg(i, 3), arg(i, 4), arg(i, 5), now, arg(i, 6),
        arg(i, 7), arg(i, 9)}, '\0')}
    redis.call('HSET', job_key, unpack(fields))
    redis.call('XADD', KEYS[1], '*', 'jid', jid)
    indexed[#indexed + 1] = seq_text
    indexed[#indexed + 1] = jid
    if prints[i] then
      redis.call('HSET', idem_key, 'jid', jid, 'fingerprint', prints[i])
      redis.call('PEXPIRE', idem_key, ARGV[2])
    end
    replies[#replies + 1] = seq
  end
end

if #indexed > 0 then
  redis.call('ZADD', KEYS[3], unpack(indexed))
end
-- Written once, as a job's record is: a replay leaves its window as it was.
-- Its jid (the batch's first job) is what makes a single job under the
-- same key look for it, and find it taken.
if batch_key and not batch_seen then
  redis.call('HSET', batch_key, 'jid', first_jid, 'fingerprint', batch_print)
  redis.call('PEXPIRE', batch_key, ARGV[2])
end

return replies
