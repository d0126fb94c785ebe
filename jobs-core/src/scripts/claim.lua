-- claim.lua: take queued jobs for one worker, mark them RUNNING and lease
-- them to it.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2]  retries waiting       {prefix}:delayed (zset, score = due time in ms)
-- ARGV[1]  consumer group name
-- ARGV[2]  consumer name (the worker)
-- ARGV[3]  the most entries to read when no entries are given
-- ARGV[4]  key prefix
-- ARGV[5]  lease length in milliseconds
-- ARGV[6..] pairs (entry id, jid) that a blocking XREADGROUP already
--           delivered to this consumer (those no longer pending to it are
--           skipped); when absent the script reads new entries itself
--           (XREADGROUP without BLOCK is allowed in a script)
--
-- First, retries whose backoff has passed go back on the stream. Job hashes,
-- indexes and channels are derived from the prefix, because the jids are
-- only known once the stream has been read. Work shared by the batch (index
-- moves, acknowledgements, the watcher check) is one command for all jobs;
-- a change is published only on channels someone is subscribed to, and
-- looked for only while an API process keeps `{prefix}:watching`.
--
-- Returns one string per job now RUNNING for this worker: only what the
-- worker needs, joined by NUL, in this order: entry id, jid, attempts, lease,
-- version, seq, start_time (the values after the change), then the job's
-- `spec` as stored (start, end, kind, params, create_time, max_attempts,
-- timeout_ms, traceparent; empty when absent).
-- Entries whose job is no longer QUEUED (cancelled, or gone) are acknowledged
-- and left out of the reply.

local prefix = ARGV[4]
local watching = anyone_watching(prefix)
local now, now_ms = clock()
local lease_until = string.format('%.0f', now_ms + tonumber(ARGV[5]))

-- Numbers given to redis.call are formatted as floats (see next_count):
-- strings here, formatted as integers, took ~3 µs off a claim (BENCHMARKS.md).
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now_ms),
  'LIMIT', '0', '100')
if #due > 0 then
  for _, jid in ipairs(due) do
    redis.call('XADD', KEYS[1], '*', 'jid', jid)
  end
  redis.call('ZREM', KEYS[2], unpack(due))
end

local entries = {}
if #ARGV > 5 then
  -- The read that delivered these entries may be a lease old by now (a
  -- paused worker, a slow reply), and recovery may since have queued their
  -- jobs again under new entries and deleted these: then a job is not this
  -- worker's to take, and taking it would leave it RUNNING with no pending
  -- entry for recovery to find. Only entries still pending to this consumer
  -- are taken; any other is left alone (acknowledging one pending elsewhere
  -- would take it from its holder). One read delivers consecutive entries,
  -- in order: those pending to this consumer between the first and the last
  -- are theirs.
  local pairs_given = (#ARGV - 5) / 2
  local still = {}
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[6], ARGV[#ARGV - 1],
      string.format('%d', pairs_given), ARGV[2])) do
    still[p[1]] = true
  end
  for i = 6, #ARGV, 2 do
    if still[ARGV[i]] then
      entries[#entries + 1] = {ARGV[i], ARGV[i + 1]}
    end
  end
else
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2],
    'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      entries[#entries + 1] = {entry[1], entry_jid(entry[2])}
    end
  end
end

-- channels and keys: the changed jobs' channels and hashes, while someone
-- watches.
local claimed, keys, taken, skipped, channels = {}, {}, {}, {}, {}
for _, e in ipairs(entries) do
  local id, jid = e[1], e[2]
  local key = jid and (prefix .. ':job:' .. jid)
  local s = key and redis.call('HMGET', key, 'status', 'seq', 'attempts', 'lease',
    'version', 'spec') or {}
  if s[1] == 'QUEUED' then
    local attempts, lease, version = next_count(s[3]), next_count(s[4]), next_count(s[5])
    redis.call('HSET', key, 'status', 'RUNNING', 'start_time', now,
      'worker', ARGV[2], 'lease_until', lease_until,
      'attempts', attempts, 'lease', lease, 'version', version)
    taken[#taken + 1] = jid
    claimed[#claimed + 1] = claim_row(id, jid, attempts, lease, version, s[2] or '', now,
      stored_spec(key, s[6]))
    if watching then
      channels[#channels + 1] = prefix .. ':events:' .. jid
      keys[#keys + 1] = key
    end
  else
    skipped[#skipped + 1] = id
  end
end

if #taken > 0 then
  -- RUNNING has no index: the entries now pending name these jobs
  -- (list.lua).
  redis.call('ZREM', prefix .. ':status:QUEUED', unpack(taken))
  publish_watched(channels, keys)
end
if #skipped > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(skipped))
  trim_acknowledged(KEYS[1], ARGV[1])
end

return claimed
