# Shell helpers shared by bench/run.sh, bench/ab.sh and bench/profile.sh (sourced, not run).

# An nginx region answering every request with a one-line 200 naming itself, in one worker:
# the fast backend the proxies are measured in front of.
region_conf() { # DIR NAME PORT [H2PORT]
  local dir=$1 name=$2 port=$3 h2=${4:-}
  cat <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $dir/tmp/region-$name.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $dir/tmp/rb-$name;
  proxy_temp_path $dir/tmp/rp-$name;
  fastcgi_temp_path $dir/tmp/rf-$name;
  uwsgi_temp_path $dir/tmp/ru-$name;
  scgi_temp_path $dir/tmp/rs-$name;
  client_body_buffer_size 128k;
  client_max_body_size 1m;
  server {
    listen 127.0.0.1:$port backlog=4096;
    ${h2:+listen 127.0.0.1:$h2 http2 backlog=4096;}
    location / {
      add_header x-region $name always;
      return 200 "$name\n";
    }
  }
}
CONF
}

# User + system CPU of a process so far, in clock ticks (getconf CLK_TCK per second).
cpu_ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; set -- $s; echo $(( ${12} + ${13} )); }

# Processes a script started, killed when it exits however it exits: append each PID to PIDS
# and `trap kill_started EXIT` once.
PIDS=()
kill_started() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
