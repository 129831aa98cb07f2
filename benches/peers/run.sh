#!/usr/bin/env bash
# Runs the same workload — one origin broadcasts to N-1 nodes, every receiver
# acknowledges, 5 ms per message — in Agora's simulator and in SimGrid, and
# prints wall time, messages per second and peak memory side by side.
#
#   benches/peers/run.sh [N ...]        (default: 100 1000 3000)
#
# Installs Debian's libsimgrid-dev if it is missing (needs root).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 3000)

if [ ! -e /usr/include/simgrid/s4u.hpp ]; then
  echo "installing libsimgrid-dev…" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsimgrid-dev >/dev/null
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
g++ -O2 -std=c++17 -o "$work/simgrid_broadcast" "$here/simgrid_broadcast.cpp" -lsimgrid
(cd "$root" && cargo build --release -q -p agora-cli)
agora="$root/target/release/agora"

python3 - "$work" "$agora" "${sizes[@]}" <<'PY'
import json, os, subprocess, sys, time

work, agora, sizes = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]]


def timed(cmd):
    """Whole-process wall time and peak RSS (MiB), measured the same way for both tools."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    return proc.stdout, wall, int(proc.stderr.strip().splitlines()[-1]) / 1024


print(f"{'nodes':>8} {'messages':>10} | {'agora s':>8} {'msg/s':>11} {'MiB':>7} | "
      f"{'simgrid s':>9} {'msg/s':>11} {'MiB':>7} | {'speed ratio':>11}")
for n in sizes:
    count = 10  # values broadcast; SimGrid slows sharply with more flows in flight (see README.md)
    scenario = os.path.join(work, f"b{n}.toml")
    with open(scenario, "w") as f:
        f.write(f'protocol = "broadcast"\nnodes = {n}\nseed = 1\nuntil = "1h"\n'
                f'[network]\ndelay = {{ model = "constant", delay = "5ms" }}\n'
                f'[params]\ncount = {count}\ninterval = "1ms"\nretransmit = "1h"\nsync = "1h"\n')
    out, a_wall, a_peak = timed([agora, "sim", scenario, "--json"])
    a = json.loads(out)
    assert a["outcome"]["all_delivered"], a["outcome"]
    a_msgs = a["delivered_by_kind"].get("data", 0) + a["delivered_by_kind"].get("ack", 0)

    platform = os.path.join(work, f"p{n}.xml")
    with open(platform, "w") as f:
        f.write('<?xml version="1.0"?>\n<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">\n'
                '<platform version="4.1"><zone id="world" routing="Full">'
                f'<cluster id="c" prefix="h" suffix="" radical="0-{n - 1}" speed="1Gf" bw="125GBps" lat="2.5ms"/>'
                '</zone></platform>\n')
    cmd = [os.path.join(work, "simgrid_broadcast"), str(n), str(count), platform,
           "--cfg=contexts/factory:raw", "--cfg=contexts/stack-size:16", "--cfg=network/model:CM02",
           "--log=root.thresh:critical"]
    out, s_wall, s_peak = timed(cmd)
    s = json.loads(out.strip().splitlines()[-1])
    a_rate, s_rate = a_msgs / a_wall, s["messages"] / s_wall
    print(f"{n:>8} {a_msgs:>10} | {a_wall:>8.2f} {a_rate:>11,.0f} {a_peak:>7.0f} | "
          f"{s_wall:>9.2f} {s_rate:>11,.0f} {s_peak:>7.0f} | {a_rate / s_rate:>10.1f}x", flush=True)
print("\nWall time and peak RSS of the whole process, for both. Messages: data + acks delivered (Agora also"
      "\nsends 2(n-1) sync messages at start, not counted). 'speed ratio' = Agora msg/s / SimGrid msg/s.")
PY
