-- common.lua: helpers every script is prefixed with (see scripts.rs).

-- Redis's clock: {µs as a string, ms as a number}.
local function clock()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2])),
    tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The error a job cancelled at a client's request carries (store.rs's
-- CANCEL_REASON, which cancel.lua is given and the worker records): here
-- for a job whose cancellation was requested while it ran and which would
-- otherwise be queued again.
local CANCELLED_BY_REQUEST = 'cancelled by request'

-- The count after `text` (absent counts as 0), as a string. A Lua number
-- given to redis.call is formatted as a float ('%.14g'), which costs twice
-- what an integer format does; claims and finishes do this for every job.
-- The jobs of one call mostly have the same counts (a first attempt, a
-- first lease), so each distinct count is formatted once per call.
local counts_after = {}
local function next_count(text)
  text = text or '0'
  local count = counts_after[text]
  if not count then
    count = string.format('%d', (tonumber(text) or 0) + 1)
    counts_after[text] = count
  end
  return count
end

-- What a job's `spec` holds, joined by NUL, in this order (record.rs's
-- SPEC_FIELDS); in a hash an earlier release wrote, fields of their own.
local SPEC_ORDER = {'start', 'end', 'kind', 'params', 'create_time', 'max_attempts',
  'timeout_ms', 'traceparent'}

-- Part n (from 1) of a job's `spec`.
local function spec_part(spec, n)
  local from = 1
  for _ = 2, n do
    from = string.find(spec, '\0', from, true) + 1
  end
  local to = string.find(spec, '\0', from, true)
  return string.sub(spec, from, to and to - 1 or -1)
end

-- The jid a queue entry's fields (field, value, ...) carry, or nil (an
-- entry deleted since it was delivered has no fields).
local function entry_jid(fields)
  for i = 1, #(fields or {}), 2 do
    if fields[i] == 'jid' then return fields[i + 1] end
  end
  return nil
end

-- A claimed job as the worker reads it (queue.rs's CLAIM_REPLY): one string,
-- not fourteen values, since every value crossing from Lua into the reply
-- costs and NUL appears in none of them; one concatenation, no table per
-- job.
local function claim_row(id, jid, attempts, lease, version, seq, start_time, spec)
  return id .. '\0' .. jid .. '\0' .. attempts .. '\0' .. lease .. '\0' .. version
    .. '\0' .. seq .. '\0' .. start_time .. '\0' .. spec
end

-- The job's `spec` as stored (`spec`, its field), or, for a hash an earlier
-- release wrote, which has no `spec`, its parts joined from fields of their
-- own.
local function stored_spec(key, spec)
  if spec then return spec end
  local parts = redis.call('HMGET', key, unpack(SPEC_ORDER))
  for i = 1, #SPEC_ORDER do parts[i] = parts[i] or '' end
  return table.concat(parts, '\0')
end

-- The create-time value `name` of the job in hash `key`: from its `spec`,
-- or from a field of that name in a hash an earlier release wrote.
local function spec_value(key, name)
  local s = redis.call('HMGET', key, 'spec', name)
  if s[1] then
    -- Looked up here, not in a table built beforehand: every script call
    -- runs this file, and few need a part of the spec.
    for n, part in ipairs(SPEC_ORDER) do
      if part == name then return spec_part(s[1], n) end
    end
  end
  return s[2]
end

-- True when some API process follows jobs (WatchJob): it keeps this key
-- while it does (watch.rs). Only then are the changed jobs' event channels
-- checked for subscribers, which costs more than the rest of a batch's
-- bookkeeping together.
local function anyone_watching(prefix)
  return redis.call('EXISTS', prefix .. ':watching') == 1
end

-- Publishes the state of each job keys[i] on channels[i], where someone
-- is subscribed (one PUBSUB NUMSUB for all).
local function publish_watched(channels, keys)
  if #channels == 0 then
    return
  end
  local subscribers = redis.call('PUBSUB', 'NUMSUB', unpack(channels))
  for i = 1, #channels do
    if subscribers[2 * i] > 0 then
      redis.call('PUBLISH', channels[i], cjson.encode(redis.call('HGETALL', keys[i])))
    end
  end
end

-- The job's `history` (attempts that ended without ending the job) with
-- `entry` appended. Only retries, hand-backs and lost leases come here: an
-- attempt that ends the job stays in the hash's own fields (`attempts`,
-- `worker`, `start_time`, `end_time`, `outcome`, `error`), so the common
-- path writes no JSON and the hash keeps its compact encoding.
local function with_attempt(history, entry)
  if history and history ~= '' and history ~= '[]' and history ~= '{}' then
    local past = cjson.decode(history)
    past[#past + 1] = entry
    return cjson.encode(past)
  end
  return '[' .. cjson.encode(entry) .. ']'
end

-- The id of the last entry the group delivered, or nil without the group.
local function last_delivered_id(stream, group)
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for i = 1, #info, 2 do
      fields[info[i]] = info[i + 1]
    end
    if fields['name'] == group then
      return fields['last-delivered-id']
    end
  end
  return nil
end

-- Drops acknowledged entries from the head of the queue stream, whole
-- nodes at a time (cheaper than deleting entries one by one). Everything
-- older than the oldest pending entry was delivered and acknowledged; with
-- nothing pending, so was everything up to the group's last delivered entry
-- (a group delivers in id order).
local function trim_acknowledged(stream, group)
  local oldest = redis.call('XPENDING', stream, group, '-', '+', '1')[1]
  local bound = oldest and oldest[1] or last_delivered_id(stream, group)
  if bound then
    redis.call('XTRIM', stream, 'MINID', '~', bound)
  end
end
