-- list.lua: one page of jobs, newest (highest seq) first.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2..] status indexes to list {prefix}:status:{STATUS} (zset, score = seq)
-- ARGV[1]  consumer group name
-- ARGV[2]  key prefix
-- ARGV[3]  the highest seq to include, or "+inf" for the first page; a
--          leading "(" excludes it
-- ARGV[4]  page size
-- ARGV[5]  "1" to list RUNNING jobs too
-- ARGV[6]  the most bytes of job data a page holds (store.rs's MAX_PAGE_BYTES)
--
-- A job is in exactly one status at a time, so the jobs of several statuses
-- (all of them, for an unfiltered list) are the merge of their indexes by
-- seq; there is no index of every job to keep up at each create. RUNNING has
-- no index either: a running job's queue entry stays pending until it leaves
-- RUNNING, so the group's pending entries name the running jobs.
--
-- Reading pending entries costs a few µs each, so they are read only as far
-- back as the page can reach: first the page is filled from the indexes
-- (one job more than it holds); a running job that belongs on it must then
-- have been created after the last of those jobs (seq follows creation),
-- and a job's entry is never older than the job, so only entries from that
-- job's creation time on are read. Without indexes (RUNNING alone), or when
-- they run out, every pending entry is read: at most the workers' total
-- concurrency plus entries about to be acknowledged.
--
-- A page ends early, before the job that would take it past ARGV[6] bytes
-- (its hash's field names and values), so that large jobs make short
-- pages, not huge replies; its first job is on it however large.
--
-- Returns {more, {job, job, ...}}: more is 1 when jobs remain after this
-- page; each job is the array {field, value, ...} of its hash. Index entries
-- whose hash has gone (deleted by hand, or expired by the TTL an earlier
-- release set, before recovery passed) are removed and skipped.

local stream, group, prefix = KEYS[1], ARGV[1], ARGV[2]
local max, size, budget = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[6])
local CHUNK = size + 1
-- Allowance for Redis's clock stepping back between two creates.
local CLOCK_SLACK_MS = 5000

-- The indexes, merged: each yields (seq, jid) pairs, highest seq first.
local sources = {}
for k = 2, #KEYS do
  local source = {key = KEYS[k], buffer = {}, at = 1, next_max = max, done = false}
  -- Reads the next CHUNK entries below the last one read.
  function source.fill(self)
    local read = redis.call('ZREVRANGEBYSCORE', self.key, self.next_max, '-inf',
      'WITHSCORES', 'LIMIT', 0, CHUNK)
    self.buffer, self.at = {}, 1
    for i = 1, #read, 2 do
      self.buffer[#self.buffer + 1] = {tonumber(read[i + 1]), read[i]}
    end
    if #read < CHUNK * 2 then
      self.done = true
    else
      self.next_max = '(' .. read[#read]
    end
  end
  source:fill()
  sources[#sources + 1] = source
end

-- The source whose next pair has the highest seq, refilling as needed; nil
-- when every source is spent.
local function next_source()
  local best = nil
  for _, source in ipairs(sources) do
    if source.at > #source.buffer and not source.done then
      source:fill()
    end
    local head = source.buffer[source.at]
    if head and (not best or head[1] > best.buffer[best.at][1]) then
      best = source
    end
  end
  return best
end

-- The bytes a job's hash takes: {field, value, ...}.
local function bytes_of(fields)
  local bytes = 0
  for k = 1, #fields do
    bytes = bytes + #fields[k]
  end
  return bytes
end

-- The indexes' jobs that still exist, newest first, one more than a page
-- (by count, or by bytes: the first that would not fit): {seq, fields,
-- jid, bytes}. Running jobs only make the page end sooner.
local indexed, indexed_bytes, over = {}, 0, false
while #indexed < CHUNK and not over do
  local source = next_source()
  if not source then break end
  local seq, jid = source.buffer[source.at][1], source.buffer[source.at][2]
  source.at = source.at + 1
  local fields = redis.call('HGETALL', prefix .. ':job:' .. jid)
  if #fields > 0 then
    local bytes = bytes_of(fields)
    over = #indexed > 0 and indexed_bytes + bytes > budget
    indexed_bytes = indexed_bytes + bytes
    indexed[#indexed + 1] = {seq, fields, jid, bytes}
  else
    redis.call('ZREM', source.key, jid)
  end
end

-- Running jobs that could be on the page: {seq, jid}, newest first.
local running = {}
if ARGV[5] == '1' and redis.call('EXISTS', stream) == 1 then
  local below, inclusive = math.huge, true
  if max ~= '+inf' then
    inclusive = string.sub(max, 1, 1) ~= '('
    below = tonumber(inclusive and max or string.sub(max, 2))
  end
  local floor, from = -1, '-'
  if #indexed == CHUNK or over then
    local last = indexed[#indexed]
    floor = last[1]
    local created = spec_value(prefix .. ':job:' .. last[3], 'create_time')
    if created then
      local ms = math.floor(tonumber(created) / 1000) - CLOCK_SLACK_MS
      if ms > 0 then from = string.format('%d', ms) end
    end
  end
  local seen = {}
  while true do
    -- Without the group (no worker has started) nothing was delivered.
    local pending = redis.pcall('XPENDING', stream, group, from, '+', 1000)
    if pending.err then break end
    for _, p in ipairs(pending) do
      local entry = redis.call('XRANGE', stream, p[1], p[1])[1]
      local jid = entry and entry_jid(entry[2])
      if jid and not seen[jid] then
        seen[jid] = true
        local s = redis.call('HMGET', prefix .. ':job:' .. jid, 'status', 'seq')
        local seq = tonumber(s[2])
        if s[1] == 'RUNNING' and seq and seq > floor
            and (seq < below or (inclusive and seq == below)) then
          running[#running + 1] = {seq, jid}
        end
      end
    end
    if #pending < 1000 then break end
    from = '(' .. pending[#pending][1]
  end
  table.sort(running, function(a, b) return a[1] > b[1] end)
end

-- The page: both lists merged by seq, up to the budget.
local page, bytes, i, r = {}, 0, 1, 1
while #page < size do
  local from_index = indexed[i]
  local from_running = running[r]
  local fields, job_bytes
  if from_index and (not from_running or from_index[1] > from_running[1]) then
    fields, job_bytes = from_index[2], from_index[4]
    i = i + 1
  elseif from_running then
    -- Found RUNNING within this script, so its hash is there.
    fields = redis.call('HGETALL', prefix .. ':job:' .. from_running[2])
    job_bytes = bytes_of(fields)
    r = r + 1
  else
    return {0, page}
  end
  if #page > 0 and bytes + job_bytes > budget then
    -- This job opens the next page.
    return {1, page}
  end
  page[#page + 1] = fields
  bytes = bytes + job_bytes
end
return {(indexed[i] or running[r]) and 1 or 0, page}
