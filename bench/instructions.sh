#!/usr/bin/env bash
# User-space instructions per request of Switchyard builds, counted by valgrind (callgrind):
# unlike requests/s and CPU time on a shared machine, the count hardly moves between runs, so
# a change of a few percent on the request path shows in one run. It says nothing about
# system calls or cache misses; confirm a real gain with bench/ab.sh.
#
#   bench/instructions.sh OLD_BINARY NEW_BINARY [MORE ...]   # 20,000 GETs at 50 connections each
#   REQUESTS=40000 CONNS=1 PROTO=h2 bench/instructions.sh A B
#   EXTRA=plugin.toml bench/instructions.sh A B               # plugin.toml's lines end the config
#
# To compare two builds of a plugin, run one binary twice with EXTRA naming each .wasm.
#
# Each binary runs twice under valgrind, once idle and once with the load, for the same time;
# the difference divided by the requests is the figure (start-up, probes and timers cancel).
set -euo pipefail
(($# >= 1)) || { echo "usage: bench/instructions.sh BINARY [BINARY ...]" >&2; exit 2; }
REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-50}
PROTO=${PROTO:-h1}
[[ $PROTO == h1 || $PROTO == h2 ]] || { echo "PROTO must be h1 or h2, not $PROTO" >&2; exit 2; }
export PATH=$PATH:/usr/sbin
for tool in nginx h2load curl valgrind callgrind_annotate; do
  command -v "$tool" >/dev/null || {
    echo "instructions.sh needs $tool (apt-get install nginx nghttp2-client curl valgrind)" >&2
    exit 2
  }
done
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
OUT=$(mktemp -d /tmp/switchyard-ir.XXXXXX)
mkdir -p "$OUT/tmp"
trap kill_started EXIT

region_conf "$OUT" a 27401 >"$OUT/region.conf"
nginx -p "$OUT/tmp" -e stderr -c "$OUT/region.conf" & PIDS+=($!)
cat >"$OUT/sy.toml" <<EOF
workers = 1
[admin]
listen = "127.0.0.1:27411"
[[services]]
name = "bench"
listen = "127.0.0.1:27410"
[services.health]
path = "/healthz"
interval = "1s"
[[services.regions]]
name = "a"
url = "http://127.0.0.1:27401"
write = true
EOF
if [[ -n ${EXTRA:-} ]]; then cat "$EXTRA" >>"$OUT/sy.toml"; fi
# Under valgrind /proc/self/exe is valgrind's tool, so the plugin compiler child cannot start:
# compile in the proxy instead (the same cost in both runs, so it cancels out).
export SWITCHYARD_COMPILE_IN_PROCESS=1
H2LOAD_PROTO=(--h1)
if [[ $PROTO == h2 ]]; then H2LOAD_PROTO=(); fi

# Total instructions of one run of BINARY under callgrind, into TOTAL: started, warmed with
# 200 requests, then LOAD requests, then stopped (SIGTERM) after SECS seconds in all. Not run
# in a subshell, so the EXIT trap sees every PID.
count() { # BINARY LOAD SECS TAG
  local out="$OUT/$4.callgrind" pid
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" run --config "$OUT/sy.toml" \
    >"$OUT/$4.log" 2>&1 & pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:27410/" && break; sleep 0.2; done
  local started=$SECONDS
  kill -0 "$pid" 2>/dev/null || { echo "$1 did not start; see $OUT/$4.log" >&2; exit 1; }
  timeout 60 h2load "${H2LOAD_PROTO[@]}" -n200 -c"$CONNS" "http://127.0.0.1:27410/" >/dev/null 2>&1 || true
  if (($2 > 0)); then
    timeout 600 h2load "${H2LOAD_PROTO[@]}" -n"$2" -c"$CONNS" -m1 "http://127.0.0.1:27410/" \
      >"$OUT/$4.load" 2>&1 || true
    grep -q " 0 failed, 0 errored" "$OUT/$4.load" || { echo "load failed:" >&2; cat "$OUT/$4.load" >&2; exit 1; }
  fi
  local left=$(($3 - (SECONDS - started)))
  if ((left > 0)); then sleep "$left"; fi
  kill -TERM "$pid"
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" 2>/dev/null || true
  TOTAL=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }')
  [[ -n $TOTAL ]] || { echo "no instruction count in $out; see $OUT/$4.log" >&2; exit 1; }
}

printf '%-40s %14s\n' "binary" "instr/request"
for bin in "$@"; do
  tag=$(basename "$bin")-$RANDOM
  # The loaded run first: its length sets how long the idle run lasts.
  begin=$SECONDS
  count "$bin" "$REQUESTS" 0 "$tag-load"
  loaded=$TOTAL
  secs=$((SECONDS - begin))
  count "$bin" 0 "$secs" "$tag-idle"
  idle=$TOTAL
  printf '%-40s %14.0f\n' "$bin" "$(echo "($loaded - $idle) / $REQUESTS" | bc -l)"
done
echo "callgrind output and logs: $OUT"
