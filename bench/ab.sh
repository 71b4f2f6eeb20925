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
set -euo pipefail
OLD=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
NEW=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
ROUNDS=${ROUNDS:-8}
SECS=${SECS:-4}
CONNS=${CONNS:-50 1}
export PATH=$PATH:/usr/sbin
OUT=$(mktemp -d /tmp/switchyard-ab.XXXXXX)
mkdir -p "$OUT/tmp"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

cat >"$OUT/region.conf" <<EOF
worker_processes 1; master_process off; daemon off; pid $OUT/tmp/r.pid; error_log stderr warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $OUT/tmp/b; proxy_temp_path $OUT/tmp/p; fastcgi_temp_path $OUT/tmp/f;
  uwsgi_temp_path $OUT/tmp/u; scgi_temp_path $OUT/tmp/s;
  server { listen 127.0.0.1:27301 backlog=4096; location / { return 200 "a\n"; } } }
EOF
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

cpu_ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; set -- $s; echo $(( ${12} + ${13} )); }
one() { # NAME PID PORT CONNS ROUND
  local c0 c1
  c0=$(cpu_ticks "$2")
  timeout $((SECS + 20)) wrk -t1 -c"$4" -d"${SECS}s" --latency "http://127.0.0.1:$3/" >"$OUT/wrk.txt" 2>&1 || true
  c1=$(cpu_ticks "$2")
  python3 - "$OUT/wrk.txt" "$1" "$4" "$5" "$((c1 - c0))" "$(getconf CLK_TCK)" >>"$OUT/rounds.jsonl" <<'EOF'
import json, re, sys
path, name, conns, rnd, ticks, hz = sys.argv[1:]
text = open(path).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
n = int(re.search(r"(\d+) requests in", text).group(1))
m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", text, re.M)
p50 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
print(json.dumps({"name": name, "conns": int(conns), "round": int(rnd), "rps": rps,
                  "p50_ms": p50, "cpu_us": int(ticks) / int(hz) * 1e6 / max(n, 1)}))
EOF
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
python3 - "$OUT/rounds.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for conns in sorted({r["conns"] for r in rows}, reverse=True):
    print(f"--- {conns} connection(s), {max(r['round'] for r in rows)} rounds")
    med = {}
    for name in ("old", "new"):
        rs = [r for r in rows if r["name"] == name and r["conns"] == conns]
        med[name] = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "cpu_us")}
        print(f"{name}: req/s {med[name]['rps']:9.0f}  p50 {med[name]['p50_ms']:.3f} ms  "
              f"CPU/req {med[name]['cpu_us']:.1f} us")
    per_round = sorted(
        n["rps"] / o["rps"]
        for o in rows for n in rows
        if o["name"] == "old" and n["name"] == "new" and o["conns"] == n["conns"] == conns
        and o["round"] == n["round"])
    print(f"new/old: req/s {med['new']['rps'] / med['old']['rps']:.3f} "
          f"(per round {per_round[0]:.2f}-{per_round[-1]:.2f}), "
          f"p50 {med['new']['p50_ms'] / med['old']['p50_ms']:.3f}, "
          f"CPU/req {med['new']['cpu_us'] / med['old']['cpu_us']:.3f}")
EOF
echo "raw rounds: $OUT/rounds.jsonl"
