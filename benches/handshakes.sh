#!/usr/bin/env bash
# handshakes.sh - full TLS handshakes per second, weir beside nginx, on this machine.
#
#   benches/handshakes.sh                       # release build, then both tools against both servers
#   TIME=20 ROUNDS=20 CONNS=200 benches/handshakes.sh
#   SKIP_BUILD=1 WEIR=/path/to/weir benches/handshakes.sh
#
# Every connection is new and does one full handshake (no session resumption or tickets are
# offered by the clients), ECDSA P-256 certificate, loopback only. Servers run one worker pinned
# to CPU $SERVER_CPU (default 0), clients pinned to CPU $CLIENT_CPU (default 1). Two figures:
#   s_time  `openssl s_time -new`: one client, handshakes back to back for TIME seconds (latency-bound)
#   h2load  `h2load -n CONNS -c CONNS`: CONNS clients at once, one request each, so one handshake per
#           request; ROUNDS runs, total requests / total time (server-CPU-bound)
# for TLS 1.3 (`-tls1_3`, h2load's default) and, with s_time, TLS 1.2. The server's access log is off.
# Note: s_time closes each connection right after its handshake; in TLS 1.3 rustls then fails to
# write its session tickets, so weir counts those handshakes as result="failed" (the crypto work
# was done). nginx here has tickets and the session cache off; weir (rustls defaults) sends two
# TLS 1.3 tickets per handshake, which is extra work counted in its figure.
# Needs nginx, openssl, h2load (nghttp2-client), curl, taskset. Run it on an otherwise idle box.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIME=${TIME:-10}; ROUNDS=${ROUNDS:-10}; CONNS=${CONNS:-100}
SERVER_CPU=${SERVER_CPU:-0}; CLIENT_CPU=${CLIENT_CPU:-1}
WEIR=${WEIR:-$repo/target/release/weir}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then (cd "$repo" && cargo build --release >&2); fi
for tool in nginx openssl h2load curl taskset; do
  command -v $tool >/dev/null || { echo "handshakes.sh: needs $tool" >&2; exit 1; }
done
NGINX_PORT=18443; WEIR_PORT=18444; ADMIN_PORT=19996

dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [[ -f $dir/nginx.pid ]] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null; [[ ${KEEP_TMP:-0} == 1 ]] && echo "kept $dir" >&2 || rm -rf "$dir"' EXIT
mkdir -p "$dir/www"; chmod 755 "$dir"   # nginx workers (www-data when run as root) read www/
echo ok > "$dir/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
cat > "$dir/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$NGINX_PORT ssl http2;   # "http2 on;" on nginx >= 1.25.1
    ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    root $dir/www; } }
CONF
cat > "$dir/weir.toml" <<CONF
[runtime]
workers = 1
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[[listeners]]
name = "tls"
bind = ["127.0.0.1:$WEIR_PORT"]
[listeners.tls]
certs = [{ cert = "cert.pem", key = "key.pem" }]
[[routes]]
path = "/"
backends = [{ site = "www" }]
[sites.www]
root = "www"
[access_log]
format = "off"
CONF
timeout 3600 taskset -c "$SERVER_CPU" nginx -c "$dir/nginx.conf" &
timeout 3600 taskset -c "$SERVER_CPU" "$WEIR" run -c "$dir/weir.toml" > /dev/null 2> "$dir/weir.err" &
for port in $NGINX_PORT $WEIR_PORT; do
  for _ in $(seq 50); do curl -fsk "https://127.0.0.1:$port/index.html" >/dev/null && break; sleep 0.1; done
  curl -fsk "https://127.0.0.1:$port/index.html" >/dev/null || { echo "server on :$port did not start" >&2; exit 1; }
done

s_time() {  # s_time PORT VERSION_FLAG -> handshakes per real second
  timeout $((TIME + 30)) taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$1" -new "$2" \
    -time "$TIME" 2>/dev/null | awk '/connections in .* real seconds/ {printf "%.0f", $1 / $4}'
}
h2load_rate() {  # h2load_rate PORT -> handshakes per second over ROUNDS runs
  local total=0 seconds=0 out
  for _ in $(seq "$ROUNDS"); do
    out=$(timeout 120 taskset -c "$CLIENT_CPU" h2load -n "$CONNS" -c "$CONNS" "https://127.0.0.1:$1/index.html")
    grep -q '^requests: .* 0 failed, 0 errored' <<<"$out" || echo "h2load on :$1 had failures" >&2
    # "finished in 812.34ms," / "1.02s," / "950.1us,"
    seconds=$(awk -v s="$seconds" '/^finished in/ { t = $3; sub(/,$/, "", t)
      if (t ~ /ms$/) { sub(/ms$/, "", t); t /= 1e3 } else if (t ~ /us$/) { sub(/us$/, "", t); t /= 1e6 } else sub(/s$/, "", t)
      print s + t }' <<<"$out")
    total=$((total + CONNS))
  done
  awk -v n="$total" -v s="$seconds" 'BEGIN {printf "%.0f", n / s}'
}

printf "%-8s %-22s %10s %10s\n" tool test nginx weir
for version in -tls1_3 -tls1_2; do
  printf "%-8s %-22s %10s %10s\n" s_time "sequential ${version#-}" "$(s_time $NGINX_PORT $version)" "$(s_time $WEIR_PORT $version)"
done
printf "%-8s %-22s %10s %10s\n" h2load "$CONNS at once, h2" "$(h2load_rate $NGINX_PORT)" "$(h2load_rate $WEIR_PORT)"
echo "(full handshakes per second; weir's handshake counter: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^weir_tls_handshakes_total' | tr '\n' ' '))"
