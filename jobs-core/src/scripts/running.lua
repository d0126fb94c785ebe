-- running.lua: one page of RUNNING jobs, newest first.
--
-- KEYS[1]  queue stream          {prefix}:queue
-- ARGV[1]  consumer group name
-- ARGV[2]  key prefix
-- ARGV[3]  the highest seq to include, or "+inf" for the first page; a
--          leading "(" excludes it (as in list.lua)
-- ARGV[4]  page size
--
-- RUNNING jobs have no index of their own: each one's queue entry is pending
-- (delivered, not yet acknowledged) until the job leaves RUNNING, so the
-- group's pending entries already name them, and keeping a sorted set too
-- would cost every claim and finish a write. A page reads all pending
-- entries, which number at most the workers' total concurrency plus
-- entries about to be acknowledged, and keeps the jobs still RUNNING.
--
-- Returns {more, {job, job, ...}} as list.lua does.

local stream, group, prefix = KEYS[1], ARGV[1], ARGV[2]
local max, size = ARGV[3], tonumber(ARGV[4])
local below = math.huge
local inclusive = true
if max ~= '+inf' then
  if string.sub(max, 1, 1) == '(' then
    inclusive = false
    max = string.sub(max, 2)
  end
  below = tonumber(max)
end

local found, seen = {}, {}
local from = '-'
while redis.call('EXISTS', stream) == 1 do
  -- No group yet (no worker has started): nothing was delivered.
  local pending = redis.pcall('XPENDING', stream, group, from, '+', 1000)
  if pending.err then break end
  for _, p in ipairs(pending) do
    local entry = redis.call('XRANGE', stream, p[1], p[1])[1]
    local fields = entry and entry[2] or {}
    for i = 1, #fields, 2 do
      local jid = fields[i] == 'jid' and fields[i + 1]
      if jid and not seen[jid] then
        seen[jid] = true
        local s = redis.call('HMGET', prefix .. ':job:' .. jid, 'status', 'seq')
        local seq = tonumber(s[2])
        if s[1] == 'RUNNING' and seq and (seq < below or (inclusive and seq == below)) then
          found[#found + 1] = {seq, jid}
        end
      end
    end
  end
  if #pending < 1000 then break end
  from = '(' .. pending[#pending][1]
end

table.sort(found, function(a, b) return a[1] > b[1] end)
local page = {}
for i = 1, math.min(size, #found) do
  page[i] = redis.call('HGETALL', prefix .. ':job:' .. found[i][2])
end
return {#found > size and 1 or 0, page}
