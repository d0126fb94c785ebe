-- take_up.lua: the jobs a claim of this worker took although its reply was
-- lost (a timeout, a dropped connection): RUNNING under this worker, their
-- entries pending to it, yet unknown to it. They are returned as claim.lua
-- returns jobs, so that the worker runs them under the leases the claim
-- gave; left alone, they would wait out their leases and lose an attempt
-- to recovery (with one attempt allowed, end ERROR without having run).
--
-- KEYS[1]  queue stream          {prefix}:queue
-- ARGV[1]  consumer group name
-- ARGV[2]  consumer name (the worker)
-- ARGV[3]  the most jobs to return
-- ARGV[4]  key prefix
-- ARGV[5..] jids the worker holds (running, or waiting for their outcome's
--           record): those are not lost
--
-- The worker calls this while none of its own claims is under way, so a
-- job RUNNING under it and not held is one whose claim reply it never saw.
-- A job whose lease has lapsed is left to recovery. Returns one row per
-- job, as claim.lua does (the values as they are: nothing is written).

local prefix = ARGV[4]
local _, now_ms = clock()
local held = {}
for i = 5, #ARGV do
  held[ARGV[i]] = true
end

local rows = {}
local max = tonumber(ARGV[3])
-- A worker's pending entries are its running jobs, as many as its
-- concurrency: past the first 10,000, lost ones are left to recovery.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', '10000', ARGV[2])
for _, p in ipairs(pending) do
  if #rows >= max then break end
  local id = p[1]
  local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
  local jid = entry and entry_jid(entry[2])
  if jid and not held[jid] then
    local key = prefix .. ':job:' .. jid
    local s = redis.call('HMGET', key, 'status', 'worker', 'lease_until', 'attempts', 'lease',
      'version', 'seq', 'start_time', 'spec')
    if s[1] == 'RUNNING' and s[2] == ARGV[2] and tonumber(s[3] or 0) >= now_ms then
      rows[#rows + 1] = claim_row(id, jid, s[4] or '', s[5] or '', s[6] or '', s[7] or '',
        s[8] or '', stored_spec(key, s[9]))
    end
  end
end
return rows
