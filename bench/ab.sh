#!/usr/bin/env bash
# Two Switchyard builds side by side: same nginx region, same wrk load, rounds alternating
# which binary goes first, so a slow spell of the shared machine hits both alike. Prints per
# round and median requests/s, p50 and proxy CPU per request, and NEW/OLD ratios.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY          # 8 rounds x 4 s, at 50 and 1 connections
#   ROUNDS=12 SECS=3 CONNS="50" bench/ab.sh /tmp/sy-old target/release/switchyard
#   EXTRA=plugin.toml bench/ab.sh OLD NEW    # plugin.toml's lines end both configs
#   NEW_EXTRA=plugin.toml bench/ab.sh BIN BIN # ... only NEW's: the cost of a plugin
#   (OLD_EXTRA likewise; run both ways round: see "Two builds side by side" in bench/README)
#   PROTO=h2 bench/ab.sh OLD NEW             # h2load -m1 (prior-knowledge h2c) instead of wrk
set -euo pipefail
OLD=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
NEW=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
ROUNDS=${ROUNDS:-8}
SECS=${SECS:-4}
CONNS=${CONNS:-50 1}
PROTO=${PROTO:-h1}
[[ $PROTO == h1 || $PROTO == h2 ]] || { echo "PROTO must be h1 or h2, not $PROTO" >&2; exit 2; }
export PATH=$PATH:/usr/sbin
# A missing load tool would read as 0 requests/s per round; say so instead (bench/run.sh
# installs them).
TOOLS=(nginx wrk curl)
if [[ $PROTO == h2 ]]; then TOOLS+=(h2load); fi
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || { echo "ab.sh needs $tool (bench/run.sh installs it)" >&2; exit 2; }
done
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
OUT=$(mktemp -d /tmp/switchyard-ab.XXXXXX)
mkdir -p "$OUT/tmp"
trap kill_started EXIT

region_conf "$OUT" a 27301 >"$OUT/region.conf"
config() { # ADMIN_PORT LISTEN_PORT [EXTRA_FILE]
  cat <<EOF
workers = 1
[admin]
listen = "127.0.0.1:$1"
[[services]]
name = "bench"
listen = "127.0.0.1:$2"
[services.health]
path = "/healthz"
interval = "1s"
[[services.regions]]
name = "a"
url = "http://127.0.0.1:27301"
write = true
EOF
  if [[ -n ${EXTRA:-} ]]; then cat "$EXTRA"; fi
  if [[ -n ${3:-} ]]; then cat "$3"; fi
}
config 27311 27310 "${OLD_EXTRA:-}" >"$OUT/old.toml"
config 27321 27320 "${NEW_EXTRA:-}" >"$OUT/new.toml"
nginx -p "$OUT/tmp" -e stderr -c "$OUT/region.conf" & PIDS+=($!)
"$OLD" run --config "$OUT/old.toml" >"$OUT/old.log" 2>&1 & OLD_PID=$!; PIDS+=($OLD_PID)
"$NEW" run --config "$OUT/new.toml" >"$OUT/new.log" 2>&1 & NEW_PID=$!; PIDS+=($NEW_PID)
for port in 27310 27320; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  timeout 20 wrk -t1 -c50 -d1s "http://127.0.0.1:$port/" >/dev/null
done

one() { # NAME PID PORT CONNS ROUND
  local c0 c1 parse
  c0=$(cpu_ticks "$2")
  if [[ $PROTO == h2 ]]; then
    rm -f "$OUT/h2.log"
    timeout $((SECS + 20)) h2load -c"$4" -t1 -m1 -D "$SECS" --log-file="$OUT/h2.log" \
      "http://127.0.0.1:$3/" >"$OUT/load.txt" 2>&1 || true
    parse=(h2load "$OUT/load.txt" "$OUT/h2.log")
  else
    timeout $((SECS + 20)) wrk -t1 -c"$4" -d"${SECS}s" --latency "http://127.0.0.1:$3/" >"$OUT/load.txt" 2>&1 || true
    parse=(wrk "$OUT/load.txt")
  fi
  c1=$(cpu_ticks "$2")
  RESULTS="$OUT/rounds.jsonl" python3 "$HERE/benchlib.py" "${parse[@]}" \
    kind=ab name="$1" conns="$4" round="$5" ticks="$((c1 - c0))"
}
for round in $(seq "$ROUNDS"); do
  for conns in $CONNS; do
    if ((round % 2)); then
      one old "$OLD_PID" 27310 "$conns" "$round"; one new "$NEW_PID" 27320 "$conns" "$round"
    else
      one new "$NEW_PID" 27320 "$conns" "$round"; one old "$OLD_PID" 27310 "$conns" "$round"
    fi
  done
done
python3 "$HERE/benchlib.py" ab "$OUT/rounds.jsonl"
echo "raw rounds: $OUT/rounds.jsonl"
