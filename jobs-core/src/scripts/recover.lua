-- recover.lua: give back the jobs of workers that stopped renewing their
-- leases (killed, lost, paused), delete finished jobs past their
-- retention, and forget the consumers of workers gone with nothing pending.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2]  retention schedule    {prefix}:retention (zset, score = expiry in
--          ms; member = the space-separated jids that expire then)
-- KEYS[3]  index of all jobs     {prefix}:index (only as earlier releases left it)
-- KEYS[4]  earlier releases' retention schedule {prefix}:expiry (their jobs
--          carry TTLs; drained the same way)
-- ARGV[1]  consumer group name
-- ARGV[2]  consumer name (the worker running this)
-- ARGV[3]  key prefix
-- ARGV[4]  lease length in milliseconds (the idle time that marks a lapse)
-- ARGV[5]  retention of a finished job, in milliseconds
-- ARGV[6]  where to go on looking for lapsed entries: '0-0' at the start of
--          a pass, then the cursor the previous call returned
--
-- An entry idle for longer than a lease belongs to a worker that stopped
-- renewing. Its job, if still RUNNING with a lapsed lease, has its attempt
-- recorded as lost and goes back on the queue under a new entry (the attempt
-- counts), or ends ERROR when it has no attempts left, or ends CANCELLED
-- when its cancellation was requested while it ran. A QUEUED job whose
-- entry was delivered but never taken is queued again. The old entry is
-- acknowledged and deleted.
--
-- Each call does a bounded amount of work (RECLAIM_AT_ONCE entries claimed,
-- of at most ten times as many pending entries looked at, as XAUTOCLAIM
-- does; FORGET_AT_ONCE jobs) so that it never holds Redis for long; the
-- caller calls again, from the cursor returned, while `more` says that work
-- remains. Without the cursor, every call would look at the same first
-- entries, and a dead worker's entries behind a thousand live ones would
-- never be found.
--
-- Returns {requeued, failed, forgotten, more, cursor, cancelled, ended}: jobs
-- queued again, jobs ended ERROR, finished jobs deleted (or found gone) after
-- their retention and removed from the indexes, 1 when work remains, where
-- the next call goes on looking, jobs ended CANCELLED, and the kind of each
-- job ended (ERROR or CANCELLED) as flat kind, status pairs: no worker
-- recorded those endings, so the caller counts them by kind.

local prefix = ARGV[3]
local now, now_ms = clock()
local requeued, failed, forgotten, cancelled = 0, 0, 0, 0
local ended = {}

local RECLAIM_AT_ONCE = 100
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], ARGV[6],
  'COUNT', RECLAIM_AT_ONCE)
for _, entry in ipairs(claimed[2]) do
  local id, jid = entry[1], entry_jid(entry[2])
  local key = jid and (prefix .. ':job:' .. jid)
  local s = key and redis.call('HMGET', key, 'status', 'lease_until', 'seq',
    'attempts', 'worker', 'start_time', 'history', 'cancel') or {}
  local lapsed = s[1] == 'RUNNING' and (not s[2] or tonumber(s[2]) < now_ms)

  if s[1] == 'RUNNING' and not lapsed then
    -- Its worker renews it still; give the entry back to the lease holder.
    redis.call('XCLAIM', KEYS[1], ARGV[1], s[5], 0, id, 'JUSTID')
  else
    if lapsed then
      local attempts = tonumber(s[4])
      local max_attempts = tonumber(spec_value(key, 'max_attempts'))
      local err = 'lease lost: worker ' .. (s[5] or '?') .. ' stopped renewing it'
      -- Its cancellation was requested while it ran: it ends CANCELLED, as
      -- cancel.lua ends a queued job, whatever attempts it had left.
      local cancel = s[8] == '1'
      -- The status it ends with, or nil when it is queued again.
      local ends
      if cancel then
        ends = 'CANCELLED'
      elseif attempts >= max_attempts then
        ends = 'ERROR'
      end
      if ends == 'ERROR' then
        -- The last attempt stays in the hash's own fields, as in finish.lua.
        redis.call('HSET', key, 'status', 'ERROR', 'end_time', now, 'outcome', 'LOST',
          'error', err)
        failed = failed + 1
      else
        local entry = {number = attempts, worker = s[5], start_time = s[6],
          end_time = now, outcome = 'LOST', error = err}
        redis.call('HSET', key, 'status', ends or 'QUEUED', 'progress', 0,
          'error', cancel and CANCELLED_BY_REQUEST or err, 'history', with_attempt(s[7], entry))
        redis.call('HDEL', key, 'lease_until', 'worker')
        if ends then
          redis.call('HSET', key, 'end_time', now)
          cancelled = cancelled + 1
        else
          redis.call('XADD', KEYS[1], '*', 'jid', jid)
          requeued = requeued + 1
        end
      end
      redis.call('ZADD', prefix .. ':status:' .. (ends or 'QUEUED'), s[3], jid)
      if ends then
        redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[5]), jid)
        ended[#ended + 1] = spec_value(key, 'kind') or ''
        ended[#ended + 1] = ends
      end
      redis.call('HINCRBY', key, 'version', 1)
      redis.call('PUBLISH', prefix .. ':events:' .. jid,
        cjson.encode(redis.call('HGETALL', key)))
    elseif s[1] == 'QUEUED' then
      -- Delivered by a blocking read to a worker that died before taking
      -- it: queue it again under a fresh entry.
      redis.call('XADD', KEYS[1], '*', 'jid', jid)
      requeued = requeued + 1
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
  end
end

-- Each schedule entry is the space-separated jids of the jobs one finish
-- ended together. Their hashes have no TTL: they are deleted here, with
-- their index entries, FORGET_AT_ONCE at a time, at most (whole entries).
-- Only a finished job is deleted; a hash an earlier release wrote may have
-- expired by its own TTL already.
local FORGET_AT_ONCE = 1000
local gone, due = {}, 0
-- Deletes the finished jobs `schedule` says are due, whole entries at a
-- time, while fewer than FORGET_AT_ONCE were due in this call.
local function forget_due(schedule)
  while due < FORGET_AT_ONCE do
    local entries = redis.call('ZRANGEBYSCORE', schedule, '-inf', now_ms, 'LIMIT', 0, 10)
    if #entries == 0 then return end
    redis.call('ZREM', schedule, unpack(entries))
    for _, entry in ipairs(entries) do
      for jid in string.gmatch(entry, '%S+') do
        due = due + 1
        local key = prefix .. ':job:' .. jid
        local status = redis.call('HGET', key, 'status')
        if status == 'SUCCESS' or status == 'ERROR' or status == 'CANCELLED' then
          -- A result kept in a key of its own goes with its job.
          redis.call('DEL', key, prefix .. ':result:' .. jid)
          gone[#gone + 1] = jid
        elseif not status then
          gone[#gone + 1] = jid
        end
      end
    end
  end
end
forget_due(KEYS[2])
forget_due(KEYS[4])
if #gone > 0 then
  redis.call('ZREM', KEYS[3], unpack(gone))
  -- The index of every job (KEYS[3]) and RUNNING's are here for what
  -- earlier releases kept; no job enters them now.
  for _, status in ipairs({'QUEUED', 'RUNNING', 'ERROR', 'SUCCESS', 'CANCELLED'}) do
    redis.call('ZREM', prefix .. ':status:' .. status, unpack(gone))
  end
  forgotten = #gone
end

-- Finishes trim the queue every ~100 entries they acknowledge; the last
-- few before a lull are trimmed here.
trim_acknowledged(KEYS[1], ARGV[1])
-- Every worker process is a consumer of its own name, which the group keeps
-- after the process is gone: one more with every restart. Once a pass, a
-- consumer idle for longer than a lease with no entry pending is deleted (a
-- live one is idle in a blocking read for a second at most, and is made
-- again by its next read if it ever were).
if ARGV[6] == '0-0' then
  for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local fields = {}
    for i = 1, #info, 2 do
      fields[info[i]] = info[i + 1]
    end
    if fields['pending'] == 0 and fields['idle'] > tonumber(ARGV[4])
        and fields['name'] ~= ARGV[2] then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    end
  end
end

-- XAUTOCLAIM's cursor is back at the start when it has looked at every
-- pending entry.
local cursor = claimed[1]
local more = (cursor ~= '0-0' or due >= FORGET_AT_ONCE) and 1 or 0
return {requeued, failed, forgotten, more, cursor, cancelled, ended}
