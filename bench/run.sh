#!/usr/bin/env bash
# Switchyard vs HAProxy vs nginx on loopback: throughput, latency, memory and failover.
# See bench/README.md. Everything started here is stopped here, by PID.
#
#   bench/run.sh                 full run (about 11 minutes), writes bench/RESULTS.md
#   QUICK=1 bench/run.sh         smoke run (about 2 minutes), writes $WORK/RESULTS.md only
#   PARTS="load" bench/run.sh    only some parts: load, memory, failover
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  DURATION=${DURATION:-1}; ROUNDS=${ROUNDS:-1}; FAILOVER_ROUNDS=${FAILOVER_ROUNDS:-1}; PLUGIN_ROUNDS=${PLUGIN_ROUNDS:-0}
  SCENARIOS=${SCENARIOS:-"h1:GET:1 h1:GET:50 h1:POST:50 h2:GET:50"}
  RESULTS_FILE=${RESULTS_FILE:-}
else
  DURATION=${DURATION:-3}; ROUNDS=${ROUNDS:-3}; FAILOVER_ROUNDS=${FAILOVER_ROUNDS:-2}; PLUGIN_ROUNDS=${PLUGIN_ROUNDS:-6}
  SCENARIOS=${SCENARIOS:-"h1:GET:1 h1:GET:50 h1:GET:256 h1:POST:1 h1:POST:50 h1:POST:256 h2:GET:1 h2:GET:50 h2:GET:256 h2:POST:50"}
  RESULTS_FILE=${RESULTS_FILE:-$HERE/RESULTS.md}
fi
DURATION=${DURATION%s}                       # seconds; "5s" works too
TARGETS=${TARGETS:-"direct switchyard haproxy nginx"}
# Scenarios also measured through Switchyard with one plugin (read-preference).
PLUGIN_SCENARIOS=${PLUGIN_SCENARIOS:-"h1:GET:1 h1:GET:50 h1:GET:256 h2:GET:50"}
PARTS=${PARTS:-"memory load failover"}
MAX_SECONDS=${MAX_SECONDS:-1500}             # hard bound on the whole run
SWITCHYARD=${SWITCHYARD:-$ROOT/target/release/switchyard}
WASM_DIR=${WASM_DIR:-$ROOT/target/wasm32-wasip2/release}
PER_TRY_TIMEOUT_MS=200

# Loopback ports. Regions: nginx returning a one-line 200 (h1 on one port, h2c on another).
A=18001; A_H2=18011; B=18002; B_H2=18012
SY=18101; SY_ADMIN=18191
SYP=18401; SYP_ADMIN=18491            # Switchyard + read-preference
SY3=18501; SY3_ADMIN=18591            # Switchyard + three plugins (memory only)
HA=18201; HA_H2=18211
NG=18301; NG_H2=18311

# shellcheck source=bench/common.sh
source "$HERE/common.sh"
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ install and build
export PATH=$PATH:/usr/sbin
need_install=()
for tool in haproxy:haproxy nginx:nginx wrk:wrk h2load:nghttp2-client curl:curl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_install+=("${tool#*:}")
done
if ((${#need_install[@]})); then
  log "installing ${need_install[*]}"
  SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_install[@]}" >/dev/null
fi
if [[ ! -x $SWITCHYARD || ${BUILD:-0} == 1 ]]; then
  log "building switchyard (release)"
  (cd "$ROOT" && cargo build --release -p switchyard)
fi
if [[ ! -f $WASM_DIR/read_preference.wasm || ! -f $WASM_DIR/write_pinning.wasm || ! -f $WASM_DIR/degraded_mode.wasm ]]; then
  log "building the example plugins"
  (cd "$ROOT" && cargo build --release --target wasm32-wasip2 -p read-preference -p write-pinning -p degraded-mode) \
    || log "plugins did not build: the plugin rows will be pending"
fi

# ------------------------------------------------------------------ processes
for port in $A $A_H2 $B $B_H2 $SY $SY_ADMIN $SYP $SYP_ADMIN $SY3 $SY3_ADMIN $HA $HA_H2 $NG $NG_H2; do
  ss -Hltn "sport = :$port" | grep -q . && die "port $port is in use (another benchmark running?)"
done
WORK=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
mkdir -p "$WORK/logs" "$WORK/raw" "$WORK/tmp"
export RESULTS=$WORK/results.jsonl
: >"$RESULTS"
declare -A PID=()
STARTED=()

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  for pid in "${STARTED[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$WORK"/raw/*.h2log
  log "work directory (configs, logs, raw output): $WORK"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, remembers its PID under NAME.
start() {
  local name=$1; shift
  "$@" >"$WORK/logs/$name.log" 2>&1 &
  PID[$name]=$!
  STARTED+=($!)
}

stop() {
  local pid=${PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -CONT "$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$1]"
}

wait_http() { # PORT [WHAT]: waits up to 10 s for any HTTP answer
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  die "nothing answers on port $1 (${2:-}); see $WORK/logs"
}

# Watchdog: the whole run is bounded.
(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$MAX_SECONDS" & nap=$!
  wait "$nap"
  echo "bench: MAX_SECONDS=$MAX_SECONDS elapsed, stopping" >&2
  kill -TERM $$
) &
STARTED+=($!)

# ------------------------------------------------------------------ configs
head -c 65536 /dev/zero | tr '\0' x >"$WORK/body64k"
cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

region_conf "$WORK" a $A $A_H2 >"$WORK/region-a.conf"
region_conf "$WORK" b $B $B_H2 >"$WORK/region-b.conf"

# Equivalent proxy configs: region a first, b as backup; health checks every 200 ms (2 to fall,
# 2 to rise) where the proxy has them; 200 ms per try; up to 3 attempts; retries on connect
# errors, resets, timeouts and 5xx for requests that may be retried; X-Forwarded-*; keep-alive
# to the regions.
switchyard_conf() { # PORT ADMIN PLUGINS...
  local port=$1 admin=$2; shift 2
  cat <<EOF
workers = 1
shutdown_grace = "1s"

[admin]
listen = "127.0.0.1:$admin"

[telemetry]
service_name = "bench"

[[services]]
name = "bench"
listen = "127.0.0.1:$port"
request_timeout = "15s"

[services.health]
path = "/healthz"
interval = "200ms"
timeout = "150ms"
unhealthy_threshold = 2
healthy_threshold = 2

[services.outlier]
consecutive_failures = 3
base_ejection = "2s"
max_ejection = "8s"

[services.failback]
stable_for = "1s"

[services.retry]
max_attempts = 3
per_try_timeout = "${PER_TRY_TIMEOUT_MS}ms"
buffer_body_limit = "64KiB"

[[services.regions]]
name = "a"
priority = 0
url = "http://127.0.0.1:$A"
write = true

[[services.regions]]
name = "b"
priority = 1
url = "http://127.0.0.1:$B"
EOF
  for plugin in "$@"; do
    case $plugin in
      read-preference) printf '\n[[services.plugins]]\npath = "%s"\nconfig = { preferred = ["a", "b"] }\n' "$WASM_DIR/read_preference.wasm" ;;
      write-pinning) printf '\n[[services.plugins]]\npath = "%s"\nconfig = { promote_on_failure = false }\n' "$WASM_DIR/write_pinning.wasm" ;;
      degraded-mode) printf '\n[[services.plugins]]\npath = "%s"\nconfig = { rules = [{ prefix = "/orders", status = 503, body = "down" }] }\n' "$WASM_DIR/degraded_mode.wasm" ;;
    esac
  done
}
switchyard_conf $SY $SY_ADMIN >"$WORK/switchyard.toml"
switchyard_conf $SYP $SYP_ADMIN read-preference >"$WORK/switchyard-plugin.toml"
switchyard_conf $SY3 $SY3_ADMIN read-preference write-pinning degraded-mode >"$WORK/switchyard-3plugins.toml"

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
  pidfile $WORK/tmp/haproxy.pid

defaults
  mode http
  timeout connect ${PER_TRY_TIMEOUT_MS}ms
  timeout server ${PER_TRY_TIMEOUT_MS}ms
  timeout client 60s
  timeout http-keep-alive 300s
  timeout check 150ms
  retries 2
  option redispatch 1
  retry-on all-retryable-errors
  option forwardfor

frontend fe
  bind 127.0.0.1:$HA
  bind 127.0.0.1:$HA_H2 proto h2
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend regions

backend regions
  option httpchk GET /healthz
  server a 127.0.0.1:$A check inter 200ms fall 2 rise 2
  server b 127.0.0.1:$B check inter 200ms fall 2 rise 2 backup
EOF

cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $WORK/tmp/nginx.pid;
error_log stderr error;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/tmp/nb;
  proxy_temp_path $WORK/tmp/np;
  fastcgi_temp_path $WORK/tmp/nf;
  uwsgi_temp_path $WORK/tmp/nu;
  scgi_temp_path $WORK/tmp/ns;
  client_body_buffer_size 128k;
  client_max_body_size 1m;
  upstream regions {
    server 127.0.0.1:$A max_fails=1 fail_timeout=2s;
    server 127.0.0.1:$B backup;
    keepalive 512;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NG backlog=4096;
    listen 127.0.0.1:$NG_H2 http2 backlog=4096;
    location / {
      proxy_pass http://regions;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$proxy_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_connect_timeout ${PER_TRY_TIMEOUT_MS}ms;
      proxy_send_timeout ${PER_TRY_TIMEOUT_MS}ms;
      proxy_read_timeout ${PER_TRY_TIMEOUT_MS}ms;
      proxy_next_upstream error timeout http_500 http_502 http_503 http_504;
      proxy_next_upstream_tries 3;
      proxy_next_upstream_timeout 15s;
    }
  }
}
EOF

start_region() { # NAME
  stop "region-$1"
  start "region-$1" nginx -p "$WORK/tmp" -e stderr -c "$WORK/region-$1.conf"
}

start_region a
start_region b
wait_http $A region-a; wait_http $B region-b
start switchyard "$SWITCHYARD" run --config "$WORK/switchyard.toml"
start haproxy haproxy -db -f "$WORK/haproxy.cfg"
start nginx nginx -p "$WORK/tmp" -e stderr -c "$WORK/nginx.conf"
PENDING=
PLUGINS_OK=0
if [[ -f $WASM_DIR/read_preference.wasm ]] && "$SWITCHYARD" check --config "$WORK/switchyard-plugin.toml" >"$WORK/logs/check-plugin.log" 2>&1; then
  start switchyard+plugin "$SWITCHYARD" run --config "$WORK/switchyard-plugin.toml"
  PLUGINS_OK=1
else
  PENDING="Switchyard with a plugin: the plugin did not load ($(tail -1 "$WORK/logs/check-plugin.log" 2>/dev/null))"
  log "$PENDING"
fi
wait_http $SY switchyard; wait_http $HA haproxy; wait_http $NG nginx
[[ $PLUGINS_OK == 1 ]] && wait_http $SYP switchyard+plugin
sleep 1   # health checks see both regions healthy

port_of() { # TARGET PROTO
  case $1:$2 in
    direct:h1) echo $A ;; direct:h2) echo $A_H2 ;;
    switchyard:*) echo $SY ;; switchyard+plugin:*) echo $SYP ;;
    haproxy:h1) echo $HA ;; haproxy:h2) echo $HA_H2 ;;
    nginx:h1) echo $NG ;; nginx:h2) echo $NG_H2 ;;
  esac
}
pid_of() { # the process doing the target's work (the region itself for direct)
  case $1 in direct) echo "${PID[region-a]}" ;; *) echo "${PID[$1]}" ;; esac
}
rss_kib() { local k v _; while read -r k v _; do [[ $k == VmRSS: ]] && { echo "$v"; return; }; done <"/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)

declare -A PEAK_RSS=()
point() { # ROUND TARGET PROTO METHOD CONNS
  local round=$1 target=$2 proto=$3 method=$4 conns=$5
  local port pid raw c0 c1 sampler
  port=$(port_of "$target" "$proto"); pid=$(pid_of "$target")
  raw=$WORK/raw/r${round}_${target}_${proto}_${method}_c${conns}
  ( peak=0; while :; do v=$(rss_kib "$pid" 2>/dev/null || echo 0); ((v > peak)) && { peak=$v; echo "$peak" >"$raw.rss"; }; sleep 0.25; done ) &
  sampler=$!
  STARTED+=($sampler)
  c0=$(cpu_ticks "$pid")
  if [[ $proto == h1 ]]; then
    local script=(); [[ $method == POST ]] && script=(-s "$WORK/post.lua")
    timeout $((DURATION + 20)) wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s --latency "${script[@]}" \
      "http://127.0.0.1:$port/" >"$raw.txt" 2>&1 || true
    c1=$(cpu_ticks "$pid")
    python3 "$HERE/benchlib.py" wrk "$raw.txt" kind=load round="$round" target="$target" proto="$proto" method="$method" conns="$conns"
  else
    local data=(); [[ $method == POST ]] && data=(-d "$WORK/body64k")
    timeout $((DURATION + 20)) h2load -c"$conns" -t1 -m1 -D "$DURATION" "${data[@]}" --log-file="$raw.h2log" \
      "http://127.0.0.1:$port/" >"$raw.txt" 2>&1 || true
    c1=$(cpu_ticks "$pid")
    python3 "$HERE/benchlib.py" h2load "$raw.txt" "$raw.h2log" kind=load round="$round" target="$target" proto="$proto" method="$method" conns="$conns"
    rm -f "$raw.h2log"
  fi
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  local rss; rss=$(cat "$raw.rss" 2>/dev/null || echo 0)
  ((rss > ${PEAK_RSS[$target]:-0})) && PEAK_RSS[$target]=$rss
  python3 - "$RESULTS" "$target" "$proto" "$method" "$conns" "$round" "$((c1 - c0))" "$CLK_TCK" <<'EOF'
import json, sys
path, target, proto, method, conns, rnd, ticks, hz = sys.argv[1:]
recs = [json.loads(l) for l in open(path)]
last = [r for r in recs if r.get("kind") == "load"][-1]
n = last.get("requests") or 0
if n and target != "direct":
    with open(path, "a") as f:
        f.write(json.dumps({"kind": "cpu", "target": target, "proto": proto, "method": method,
                            "conns": int(conns), "round": int(rnd),
                            "us_per_req": int(ticks) / int(hz) * 1e6 / n}) + "\n")
EOF
  local last; last=$(grep '"kind": "load"' "$RESULTS" | tail -n 1 | grep -o '"rps": [0-9]*' || true)
  log "round $round  $target  $proto $method c=$conns  ${last:-?}"
}

# ------------------------------------------------------------------ memory (idle)
declare -A IDLE_RSS=()
if [[ " $PARTS " == *" memory "* ]]; then
  if [[ -f $WASM_DIR/degraded_mode.wasm ]] && "$SWITCHYARD" check --config "$WORK/switchyard-3plugins.toml" >"$WORK/logs/check-3plugins.log" 2>&1; then
    start switchyard+3plugins "$SWITCHYARD" run --config "$WORK/switchyard-3plugins.toml"
    wait_http $SY3 switchyard+3plugins
  else
    log "three plugins did not load: $(tail -1 "$WORK/logs/check-3plugins.log" 2>/dev/null)"
  fi
  sleep 2
  for t in switchyard switchyard+plugin switchyard+3plugins haproxy nginx region-a; do
    [[ -n ${PID[$t]:-} ]] && IDLE_RSS[$t]=$(rss_kib "${PID[$t]}")
  done
  stop switchyard+3plugins
fi

# ------------------------------------------------------------------ load
rotate() { # N WORDS...: the words rotated left by N
  local n=$1; shift; local a=("$@"); local k=$((n % ${#a[@]}))
  echo "${a[@]:k}" "${a[@]:0:k}"
}
if [[ " $PARTS " == *" load "* ]]; then
  log "warm-up"
  for t in $TARGETS $([[ $PLUGINS_OK == 1 ]] && echo switchyard+plugin); do
    timeout 20 wrk -t1 -c50 -d1s "http://127.0.0.1:$(port_of "$t" h1)/" >/dev/null 2>&1 || true
    timeout 20 h2load -c50 -t1 -m1 -n 20000 "http://127.0.0.1:$(port_of "$t" h2)/" >/dev/null 2>&1 || true
  done
  for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
      IFS=: read -r proto method conns <<<"$scenario"
      targets=$TARGETS
      if [[ $PLUGINS_OK == 1 && " $PLUGIN_SCENARIOS " == *" $scenario "* ]]; then
        targets="$targets switchyard+plugin"
      fi
      for t in $(rotate "$round" $targets); do
        point "$round" "$t" "$proto" "$method" "$conns"
      done
    done
  done
  # A plugin's cost is a few percent, and per-round ratios on a shared machine spread by
  # +-15%: extra rounds pair Switchyard with Switchyard + plugin alone (numbered from 101;
  # the report's SY+plugin/SY column is the median of all per-round pairs).
  if [[ $PLUGINS_OK == 1 ]]; then
    for round in $(seq "$PLUGIN_ROUNDS"); do
      for scenario in $PLUGIN_SCENARIOS; do
        IFS=: read -r proto method conns <<<"$scenario"
        for t in $(rotate "$round" switchyard switchyard+plugin); do
          point "$((100 + round))" "$t" "$proto" "$method" "$conns"
        done
      done
    done
  fi
fi

# ------------------------------------------------------------------ failover
FAILOVER_DESC="Steady load: $((${FAILOVER_RATE:-1500})) GET/s over 16 keep-alive connections (python asyncio client), 2 s before the fault and 4 s after. kill = SIGKILL of region a's process; blackhole = SIGSTOP of it (its listen socket still takes connections into the backlog, nothing answers). Region a is restarted fresh, and traffic seen flowing to it again, before each test. per_try_timeout / timeout server / proxy_read_timeout = ${PER_TRY_TIMEOUT_MS} ms."
if [[ " $PARTS " == *" failover "* ]]; then
  region_serving() { # PORT: 10 answers in a row from region a
    local ok=0
    for _ in $(seq 300); do
      if curl -s -D - -o /dev/null --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null | grep -qi '^x-region: a'; then
        ok=$((ok + 1)); ((ok >= 10)) && return 0
      else
        ok=0
      fi
      sleep 0.05
    done
    return 1
  }
  for round in $(seq "$FAILOVER_ROUNDS"); do
    for t in $(rotate "$round" switchyard haproxy nginx); do
      for fault in kill blackhole; do
        start_region a
        wait_http $A region-a
        region_serving "$(port_of "$t" h1)" || log "$t: did not route to region a again within 15 s"
        signal=SIGKILL; [[ $fault == blackhole ]] && signal=SIGSTOP
        timeout 60 python3 "$HERE/benchlib.py" failover target="$t" fault="$fault" round="$round" \
          port="$(port_of "$t" h1)" pid="${PID[region-a]}" signal=$signal rate="${FAILOVER_RATE:-1500}" \
          >"$WORK/raw/failover_${round}_${t}_${fault}.json" || log "$t $fault: the load client failed"
        log "failover round $round  $t  $fault  $(cat "$WORK/raw/failover_${round}_${t}_${fault}.json" 2>/dev/null | grep -o '"failed.*' || true)"
        stop region-a
      done
    done
  done
  start_region a
fi

# ------------------------------------------------------------------ report
for t in switchyard switchyard+plugin switchyard+3plugins haproxy nginx region-a; do
  key=$t; [[ $t == region-a ]] && key=direct
  idle=${IDLE_RSS[$t]:-}; load=${PEAK_RSS[$key]:-}
  [[ -z $idle && -z $load ]] && continue
  label=$t; [[ $t == switchyard+3plugins ]] && label="switchyard + 3 example plugins"
  [[ $t == region-a ]] && label="region (nginx return 200)"
  printf '{"kind": "memory", "label": "%s", "idle_mib": %s, "load_mib": %s}\n' "$label" \
    "$( [[ -n $idle ]] && awk "BEGIN{print $idle/1024}" || echo null)" \
    "$( [[ -n $load && $load != 0 ]] && awk "BEGIN{print $load/1024}" || echo null)" >>"$RESULTS"
done

sy_version=$("$SWITCHYARD" --version 2>/dev/null || echo switchyard)
git_rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo "?")
git_dirty=$(cd "$ROOT" && git status --porcelain -- proxy 2>/dev/null | grep -q . && echo "+uncommitted changes" || true)
python3 - "$WORK/meta.json" <<EOF
import json, sys
meta = {
  "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
  "machine": "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), Linux $(uname -r), shared by load generator, proxies and regions",
  "rounds": $ROUNDS, "duration": "${DURATION}s",
  "versions": {
    "switchyard": "${sy_version#switchyard } (git $git_rev$git_dirty)",
    "HAProxy": "$(haproxy -v 2>&1 | head -1 | awk '{print $3}')",
    "nginx": "$(nginx -v 2>&1 | sed 's|.*nginx/||')",
    "wrk": "$(wrk -v 2>&1 | head -1 | awk '{print $2}')",
    "h2load": "$(h2load --version 2>&1 | head -1 | awk '{print $2}')",
    "rustc": "$(rustc -V 2>/dev/null | awk '{print $2}')",
  },
  "failover": """$FAILOVER_DESC""",
  "pending": """$PENDING""",
  "commands": [
    "$( [[ $QUICK == 1 ]] && echo 'QUICK=1 ')DURATION=${DURATION}s ROUNDS=$ROUNDS FAILOVER_ROUNDS=$FAILOVER_ROUNDS PLUGIN_ROUNDS=$PLUGIN_ROUNDS bench/run.sh",
    "wrk -t1 -c\$CONNS -d${DURATION}s --timeout 5s --latency [-s post.lua: 64 KiB POST] http://127.0.0.1:\$PORT/",
    "h2load -c\$CONNS -t1 -m1 -D $DURATION [-d body64k] --log-file=LOG http://127.0.0.1:\$PORT/   (percentiles from LOG)",
    "regions: nginx -c region-a.conf (worker_processes 1, master_process off, return 200)",
    "switchyard run --config switchyard.toml (workers = 1); haproxy -db -f haproxy.cfg (nbthread 1); nginx -c nginx.conf (worker_processes 1)",
    "configs: $WORK/*.conf, *.cfg, *.toml (generated by bench/run.sh)",
  ],
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
python3 "$HERE/benchlib.py" report "$WORK" >/dev/null
cat "$WORK/RESULTS.md"
if [[ -n $RESULTS_FILE ]]; then
  cp "$WORK/RESULTS.md" "$RESULTS_FILE"
  log "wrote $RESULTS_FILE"
fi
