"""What the pieces of Jobs' scripts cost inside Redis's Lua, one at a time:
each runs 20,000 times in a loop inside one EVAL, five times over, and the
least time per iteration (INFO commandstats) is printed. Each loop runs
after common.lua, as every script does, so the scripts' own helpers are
measured. The job hash is shaped like one the claim and the finish read and
write. Used by scripts/profile.sh lua, against a private Redis."""
import argparse

import redis

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--scripts", required=True, help="jobs-core/src/scripts")
args = parser.parse_args()

r = redis.Redis(port=args.port)
JOB = "luacost:job"
SPEC = "1\x00100\x00sum\x00\x001795978638797329\x003\x0060000\x00" + "0" * 55
r.hset(JOB, mapping={"status": "RUNNING", "version": "3", "seq": "123", "attempts": "1",
                     "lease": "2", "lease_until": "1795978668797", "spec": SPEC})

# Values as a claim has them in hand; `i` makes every built string new, as
# every job's is.
VALUES = ("local id, jid, n, now = '1795978511323-52', '3f38aaaa-bbbb-cccc-dddd-eeeeffff0000', "
          "'1', '1795978638797329' local spec = string.rep('x', 120) ")
COMMON = open(f"{args.scripts}/common.lua").read()
PIECES = [
    ("the loop alone", "local x = i"),
    ("TIME", "redis.call('TIME')"),
    ("HMGET of 1 field", f"redis.call('HMGET', '{JOB}', 'status')"),
    ("HMGET of 6 fields (the claim's)",
     f"redis.call('HMGET', '{JOB}', 'status', 'seq', 'attempts', 'lease', 'version', 'spec')"),
    ("HSET of 7 fields (the claim's)",
     f"redis.call('HSET', '{JOB}', 'status', 'RUNNING', 'start_time', now, 'worker', "
     "'vm-10733-6616ed5321b35', 'lease_until', '1795978668797', 'attempts', n, 'lease', n, "
     "'version', '4')"),
    ("string.format('%d', n + 1)", "local c = string.format('%d', tonumber(n) + 1)"),
    ("next_count (common.lua): the same count again", "local c = next_count(n)"),
    ("tonumber of a 16-digit string", "local t = tonumber(now)"),
    ("a claim row by table.concat",
     "local s = table.concat({id, jid, n, n, n, '123', now, spec, i}, '\\0')"),
    ("a claim row by ..",
     "local s = id .. '\\0' .. jid .. '\\0' .. n .. '\\0' .. n .. '\\0' .. n .. '\\0' .. '123' "
     ".. '\\0' .. now .. '\\0' .. spec .. i"),
]


def per_iteration(body, n=20000):
    best = None
    for _ in range(5):
        r.config_resetstat()
        r.eval(f"{COMMON}\n{VALUES} for i = 1, {n} do {body} end return 0", 0)
        usec = r.info("commandstats")["cmdstat_eval"]["usec"] / n
        best = usec if best is None else min(best, usec)
    return best


for label, body in PIECES:
    print(f"  {label:46} {per_iteration(body):6.3f} us")
r.delete(JOB)
