#!/usr/bin/env bash
# reload_load.sh - 1,000 config reloads under load: every request must succeed.
#
#   benches/reload_load.sh                 # release build, 1,000 reloads, wrk on a static and a proxied route
#   RELOADS=200 benches/reload_load.sh     # fewer
#   SKIP_BUILD=1 WEIR=/path/to/weir benches/reload_load.sh
#
# Starts an nginx upstream (127.0.0.1:18190) and weir (127.0.0.1:18185, admin :19995) from two configs
# that differ in weights and in one extra route, runs wrk against a static file and a proxied path for
# the whole time, and alternates the configs with POST /reload RELOADS times. Reports wrk's errors and
# non-2xx counts (must be 0), reload latency p50/p99 as seen by the client of /reload, and weir's RSS
# before and after. Loopback only; every step bounded by `timeout`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RELOADS=${RELOADS:-1000}
WEIR=${WEIR:-$repo/target/release/weir}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then (cd "$repo" && cargo build --release >&2); fi
for tool in nginx wrk curl; do command -v $tool >/dev/null || { echo "reload_load.sh: needs $tool" >&2; exit 1; }; done

dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [[ -f $dir/nginx.pid ]] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
mkdir -p "$dir/www" "$dir/a" "$dir/b"
head -c 1024 /dev/urandom | base64 > "$dir/www/index.html"
echo a > "$dir/a/id.txt"; echo b > "$dir/b/id.txt"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:18190; location / { return 200 "upstream\n"; } } }
CONF
config() {  # config WEIGHT_A WEIGHT_B EXTRA_ROUTE
cat <<CONF
[admin]
listen = "127.0.0.1:19995"
[[listeners]]
name = "web"
bind = ["127.0.0.1:18185"]
[[routes]]
path = "/api/"
backends = [{ service = "up" }]
[[routes]]
path = "/ab/"
strip_prefix = true
backends = [{ site = "a", weight = $1 }, { site = "b", weight = $2 }]
$3
[[routes]]
path = "/"
backends = [{ site = "www" }]
[sites.www]
root = "www"
[sites.a]
root = "a"
[sites.b]
root = "b"
[services.up]
endpoints = ["127.0.0.1:18190"]
[access_log]
format = "off"
CONF
}
config 90 10 "" > "$dir/one.toml"
config 10 90 $'[[routes]]\npath = "/extra/"\nbackends = [{ site = "a" }]' > "$dir/two.toml"
cp "$dir/one.toml" "$dir/weir.toml"

timeout 600 nginx -c "$dir/nginx.conf" &
timeout 600 "$WEIR" run -c "$dir/weir.toml" > /dev/null 2> "$dir/weir.err" &
for _ in $(seq 50); do curl -fs http://127.0.0.1:19995/readyz >/dev/null && break; sleep 0.1; done
pid=$(pgrep -f "^$WEIR run -c $dir/weir.toml" | head -1)
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
rss_idle=$(rss)
# Invalid configs, pushed in turn every 10th reload.
sed 's/^\[\[routes\]\]$/[[routes]/' "$dir/one.toml" > "$dir/bad-syntax.toml"
sed 's/^strip_prefix = true$/strip_prefix = true\nstrip_prefixx = true/' "$dir/one.toml" > "$dir/bad-key.toml"
sed 's/service = "up"/service = "missing"/' "$dir/one.toml" > "$dir/bad-ref.toml"
head -c 200 "$dir/one.toml" > "$dir/bad-truncated.toml"
bad=(bad-syntax bad-key bad-ref bad-truncated)

WARMUP=${WARMUP:-10}   # seconds of load before the first reload (RSS settles)
duration=$(( RELOADS / 20 + 10 + WARMUP ))
timeout $((duration + 30)) wrk -t1 -c32 -d${duration}s http://127.0.0.1:18185/index.html > "$dir/wrk-static.txt" &
timeout $((duration + 30)) wrk -t1 -c32 -d${duration}s http://127.0.0.1:18185/api/x > "$dir/wrk-proxy.txt" &
sleep "$WARMUP"
rss_warm=$(rss)
: > "$dir/latency.txt"
failed_reloads=0
invalid=0
accepted_invalid=0
for i in $(seq "$RELOADS"); do
  if (( i % 10 == 0 )); then
    cp "$dir/${bad[$(( i / 10 % 4 ))]}.toml" "$dir/weir.toml.new"
    mv "$dir/weir.toml.new" "$dir/weir.toml"
    code=$(curl -s -o /dev/null -w "%{http_code}" -X POST http://127.0.0.1:19995/reload)
    invalid=$((invalid + 1))
    [[ $code == 400 ]] || accepted_invalid=$((accepted_invalid + 1))
    continue
  fi
  if (( i % 2 )); then cp "$dir/two.toml" "$dir/weir.toml.new"; else cp "$dir/one.toml" "$dir/weir.toml.new"; fi
  mv "$dir/weir.toml.new" "$dir/weir.toml"
  out=$(curl -s -o /dev/null -w "%{http_code} %{time_total}" -X POST http://127.0.0.1:19995/reload)
  [[ ${out%% *} == 200 ]] || failed_reloads=$((failed_reloads + 1))
  echo "${out#* }" >> "$dir/latency.txt"
done
rss_after=$(rss)
sleep $(( duration + 3 ))
pct() { sort -n "$dir/latency.txt" | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100); if(i<1)i=1; printf "%.1f", a[i]*1000}'; }
errors() { grep -E "Socket errors|Non-2xx" "$1" || echo "none"; }
echo "reloads: $((RELOADS - invalid)) valid (answered non-200: $failed_reloads), $invalid invalid (not refused: $accepted_invalid); the file watch may also have reloaded"
echo "POST /reload latency (client side): p50 $(pct 50) ms, p99 $(pct 99) ms"
echo "static: $(grep -E 'requests in' "$dir/wrk-static.txt"); errors: $(errors "$dir/wrk-static.txt")"
echo "proxy:  $(grep -E 'requests in' "$dir/wrk-proxy.txt"); errors: $(errors "$dir/wrk-proxy.txt")"
echo "weir RSS: idle ${rss_idle} KiB, under load before reloads ${rss_warm} KiB, after reloads ${rss_after} KiB"
echo "reloads counted: $(curl -s http://127.0.0.1:19995/metrics | grep '^weir_config_reloads_total' | tr '\n' ' ')"
