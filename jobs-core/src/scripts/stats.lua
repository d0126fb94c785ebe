-- stats.lua: how much work waits, for metrics; read-only, one call per scrape.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2]  retries waiting       {prefix}:delayed (zset, score = due time in ms)
-- KEYS[3]  index of QUEUED jobs  {prefix}:status:QUEUED (zset, score = seq)
-- ARGV[1]  consumer group name
-- ARGV[2]  key prefix
--
-- Returns {waiting, running, delayed, oldest_ms, now_ms}:
--   waiting    QUEUED jobs not waiting out a retry backoff
--   running    entries delivered and not yet acknowledged: the RUNNING
--              jobs, and for a moment ones just read or just cancelled
--   delayed    jobs waiting out a retry backoff (QUEUED too)
--   oldest_ms  when the oldest entry no worker has read yet was queued (its
--              stream id's time, ms on Redis's clock), or -1 when none
--              waits. Entries of jobs cancelled while queued are passed
--              over (a worker drops them when it reads them, so they pile
--              up only while no worker reads): up to SCAN_MAX of them, past
--              which the last one's time stands in, an upper bound.
--   now_ms     Redis's clock, ms

local SCAN_PAGE, SCAN_MAX = 100, 1000
local _, now_ms = clock()
local delayed = redis.call('ZCARD', KEYS[2])
local waiting = redis.call('ZCARD', KEYS[3]) - delayed
if waiting < 0 then
  waiting = 0
end
local running = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local summary = redis.pcall('XPENDING', KEYS[1], ARGV[1])
  -- Without the group no worker has read anything yet.
  if not summary.err then
    running = summary[1]
  end
end

local oldest = -1
if waiting > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  local last = last_delivered_id(KEYS[1], ARGV[1])
  -- Without the group (no worker has started yet) every entry waits.
  local from = '-'
  if last then
    from = '(' .. last
  end
  local scanned, last_time = 0, nil
  while oldest < 0 and scanned < SCAN_MAX do
    local entries = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', SCAN_PAGE)
    for _, entry in ipairs(entries) do
      local time = tonumber(string.match(entry[1], '^(%d+)'))
      local jid = entry_jid(entry[2])
      if jid and redis.call('HGET', ARGV[2] .. ':job:' .. jid, 'status') == 'QUEUED' then
        oldest = time
        break
      end
      last_time = time
    end
    scanned = scanned + #entries
    if #entries < SCAN_PAGE then break end
    from = '(' .. entries[#entries][1]
  end
  if oldest < 0 and scanned >= SCAN_MAX then
    oldest = last_time
  end
end

return {waiting, running, delayed, oldest, now_ms}
