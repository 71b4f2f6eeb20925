#!/usr/bin/env bash
# Profiles Switchyard under the 50-connection GET load with perf (software cpu-clock events,
# so it works in VMs without hardware counters). Writes perf.data, a flat profile, and a
# flamegraph SVG when `inferno-flamegraph` is installed (cargo install inferno).
#
#   bench/profile.sh                 # 8 s of wrk -c50 against switchyard, one region
#   SECONDS_=4 CONNS=1 bench/profile.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
export PATH=$PATH:/usr/sbin
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
SWITCHYARD=${SWITCHYARD:-$ROOT/target/release/switchyard}
CONNS=${CONNS:-50}
SECS=${SECONDS_:-8}
CONFIG=${CONFIG:-}
OUT=${OUT:-$(mktemp -d /tmp/switchyard-profile.XXXXXX)}
mkdir -p "$OUT/tmp"
trap kill_started EXIT

region_conf "$OUT" a 27001 >"$OUT/region.conf"
if [[ -z $CONFIG ]]; then
  CONFIG=$OUT/switchyard.toml
  cat >"$CONFIG" <<EOF
workers = 1
[admin]
listen = "127.0.0.1:27091"
[[services]]
name = "bench"
listen = "127.0.0.1:27100"
[services.health]
path = "/healthz"
interval = "200ms"
[[services.regions]]
name = "a"
url = "http://127.0.0.1:27001"
write = true
EOF
fi
nginx -p "$OUT/tmp" -e stderr -c "$OUT/region.conf" & PIDS+=($!)
"$SWITCHYARD" run --config "$CONFIG" >"$OUT/switchyard.log" 2>&1 & SY=$!; PIDS+=($SY)
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:27100/ && break; sleep 0.1; done
timeout 20 wrk -t1 -c"$CONNS" -d1s http://127.0.0.1:27100/ >/dev/null
timeout $((SECS + 20)) wrk -t1 -c"$CONNS" -d"${SECS}s" --latency http://127.0.0.1:27100/ >"$OUT/wrk.txt" &
WRK=$!; PIDS+=($WRK)
sleep 1
timeout $((SECS + 10)) perf record -e cpu-clock -F 2999 --call-graph dwarf,32768 -p "$SY" -o "$OUT/perf.data" -- sleep $((SECS - 2)) 2>"$OUT/perf-record.log" || true
wait "$WRK" || true
grep -E 'Requests/sec|50%|99%' "$OUT/wrk.txt"
perf report -i "$OUT/perf.data" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null \
  | grep -v '^$' | grep -E "^ +[0-9]" | sed "s/  */ /g" >"$OUT/flat.txt" || true
perf report -i "$OUT/perf.data" --children --sort symbol --percent-limit 3 --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' >"$OUT/inclusive.txt" || true
if command -v inferno-collapse-perf >/dev/null; then
  perf script -i "$OUT/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$OUT/flamegraph.svg"
  echo "flamegraph: $OUT/flamegraph.svg"
fi
echo "flat profile: $OUT/flat.txt; inclusive: $OUT/inclusive.txt"
head -40 "$OUT/flat.txt"
