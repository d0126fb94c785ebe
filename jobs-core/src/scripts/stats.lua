-- stats.lua: how much work waits, for metrics; read-only, one call per scrape.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- KEYS[2]  retries waiting       {prefix}:delayed (zset, score = due time in ms)
-- ARGV[1]  consumer group name
--
-- Returns {waiting, running, delayed, oldest_ms, now_ms}:
--   waiting    entries no worker has taken yet (the stream's length less the
--              entries delivered and not yet acknowledged: every finished
--              entry is acknowledged and deleted)
--   running    entries delivered to a worker and not yet acknowledged
--   delayed    jobs waiting out a retry backoff
--   oldest_ms  when the oldest waiting entry was queued (its stream id's
--              time, ms on Redis's clock), or -1 when none waits
--   now_ms     Redis's clock, ms

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delayed = redis.call('ZCARD', KEYS[2])

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0, delayed, -1, now_ms}
end

local length = redis.call('XLEN', KEYS[1])
local pending, last = 0, nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do
    info[group[i]] = group[i + 1]
  end
  if info['name'] == ARGV[1] then
    pending = tonumber(info['pending'])
    last = info['last-delivered-id']
  end
end

-- Without the group (no worker has started yet) every entry waits.
local first
if last then
  first = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)[1]
else
  first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
end
local oldest = -1
if first then
  oldest = tonumber(string.match(first[1], '^(%d+)'))
end

local waiting = length - pending
if waiting < 0 then
  waiting = 0
end
return {waiting, pending, delayed, oldest, now_ms}
