#!/usr/bin/env bash
# idle_conns.sh - weir's RSS while it holds 10,000 idle HTTP/1.1 keep-alive connections.
#
#   benches/idle_conns.sh                       # 10,000 connections; exit 1 if RSS > 100 MiB
#   CONNS=2000 benches/idle_conns.sh            # fewer
#   WEIR=/path/to/weir benches/idle_conns.sh    # another binary (default target/release/weir)
#   WORKERS=1 benches/idle_conns.sh             # [runtime] workers (default: weir's, the CPUs)
#
# SPEC "Promises in numbers": 10,000 idle keep-alive connections <= 100 MiB RSS. Starts weir
# serving a 1 KiB index.html (listener 127.0.0.1:18181, admin 127.0.0.1:18182, access log off,
# idle and header-read timeouts long enough to outlast the run), then a Python client opens
# CONNS connections, sends one `GET /index.html` on each and reads the answer, and leaves them
# open and idle. weir's VmRSS is read from /proc before and after, with the count of established
# sockets on the listener at that moment. Loopback only; every step is bounded by a timeout.
# Exit 0 within the limit, 1 over it, 2 when the measurement could not be made.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONNS=${CONNS:-10000}
PORT=${PORT:-18181}
ADMIN_PORT=${ADMIN_PORT:-18182}
LIMIT_MIB=${LIMIT_MIB:-100}
WEIR=${WEIR:-$repo/target/release/weir}
RUN_FOR=${RUN_FOR:-600}     # seconds weir and the client may live at most
OPEN_WITHIN=${OPEN_WITHIN:-180}   # seconds allowed to open all the connections

die() { echo "idle_conns.sh: $*" >&2; exit 2; }
for tool in python3 curl ss pgrep timeout; do
  command -v $tool >/dev/null || die "needs $tool"
done
if [[ ! -x $WEIR ]]; then (cd "$repo" && timeout 1800 cargo build --release >&2); fi
[[ -x $WEIR ]] || die "no weir binary at $WEIR"

# weir and the client each hold one descriptor per connection, plus their own.
need=$((CONNS + 1024))
if (( $(ulimit -n) < need )); then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
(( $(ulimit -n) >= need )) || die "ulimit -n is $(ulimit -n), needs $need (hard limit $(ulimit -Hn))"

dir=$(mktemp -d)
cleanup() {
  local jobs_left
  jobs_left=$(jobs -p)
  [[ -n $jobs_left ]] && kill $jobs_left 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

mkdir "$dir/www"
{ echo "<!doctype html><title>idle</title>"; head -c 720 /dev/urandom | base64; } > "$dir/www/index.html"
cat > "$dir/weir.toml" <<CONF
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[[listeners]]
name = "web"
bind = ["127.0.0.1:$PORT"]
[[routes]]
path = "/"
backends = [{ site = "www" }]
[sites.www]
root = "www"
[access_log]
format = "off"
[limits]
idle_timeout = "${RUN_FOR}s"
header_read_timeout = "${RUN_FOR}s"
max_connections = $((CONNS * 2))
shutdown_grace = "5s"
CONF
if [[ -n ${WORKERS:-} ]]; then printf '[runtime]\nworkers = %d\n' "$WORKERS" >> "$dir/weir.toml"; fi

cat > "$dir/client.py" <<'PY'
"""Opens N keep-alive connections, one GET each, then holds them idle."""
import os, socket, sys, time

n, port, report, hold, open_within = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                      float(sys.argv[4]), float(sys.argv[5]))
request = (b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           b"User-Agent: idle_conns.sh\r\n\r\n" % port)

def recv_more(s, buf):
    chunk = s.recv(65536)
    if not chunk:
        raise ConnectionError("closed by the server")
    return buf + chunk

def exchange(s):
    s.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf = recv_more(s, buf)
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    if status != 200:
        raise ValueError("status %d" % status)
    if b"close" in fields.get(b"connection", b""):
        raise ValueError("server answered Connection: close")
    length = int(fields[b"content-length"])
    while len(body) < length:
        body = recv_more(s, body)

conns, failed, first_error = [], 0, ""
deadline = time.monotonic() + open_within
for _ in range(n):
    if time.monotonic() > deadline:
        first_error = first_error or "ran out of time"
        break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        exchange(s)
        conns.append(s)
    except (OSError, ValueError, KeyError) as e:
        failed += 1
        first_error = first_error or repr(e)
        s.close()
with open(report + ".tmp", "w") as f:
    f.write("%d %d %s\n" % (len(conns), failed, first_error))
os.rename(report + ".tmp", report)
time.sleep(hold)
PY

timeout "$RUN_FOR" "$WEIR" run -c "$dir/weir.toml" > "$dir/weir.out" 2> "$dir/weir.err" &
timeout_pid=$!
ready=0
for _ in $(seq 100); do
  if curl -fs --max-time 1 "http://127.0.0.1:$ADMIN_PORT/readyz" > /dev/null; then ready=1; break; fi
  sleep 0.1
done
(( ready )) || { tail -20 "$dir/weir.err" >&2; die "weir did not become ready"; }
pid=$(pgrep -P "$timeout_pid" | head -1)
[[ -n $pid && -r /proc/$pid/status ]] || die "cannot find weir's pid"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
established() { ss -Htn state established "( sport = :$PORT )" | wc -l; }
open_metric() {
  curl -fs --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^weir_open_connections/ {n += $NF} END {print n + 0}'
}

# One request first, so the file cache and other lazy state count in the baseline.
curl -fs --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/index.html" || die "GET /index.html failed"
sleep 1
rss_before=$(rss)

timeout "$RUN_FOR" python3 "$dir/client.py" "$CONNS" "$PORT" "$dir/client.report" \
  "$RUN_FOR" "$OPEN_WITHIN" &
client_pid=$!
for _ in $(seq $((OPEN_WITHIN * 10 + 50))); do
  [[ -s $dir/client.report ]] && break
  kill -0 "$client_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -s $dir/client.report ]] || die "the client did not finish opening connections"
read -r opened failed first_error < "$dir/client.report"
sleep 2   # let weir settle with every connection idle
rss_after=$(rss)
open_now=$(established)
open_weir=$(open_metric)

kill "$client_pid" 2>/dev/null || true
wait "$client_pid" 2>/dev/null || true
for _ in $(seq 100); do (( $(established) == 0 )) && break; sleep 0.1; done
sleep 1
rss_closed=$(rss)

limit_kib=$((LIMIT_MIB * 1024))
echo "connections: $opened opened ($failed failed${first_error:+, first: $first_error}); at measurement $open_now established on :$PORT, weir_open_connections $open_weir"
awk -v b="$rss_before" -v a="$rss_after" -v c="$rss_closed" -v n="$open_now" 'BEGIN {
  printf "weir VmRSS: before %d KiB (%.1f MiB), with idle connections %d KiB (%.1f MiB), after closing them %d KiB (%.1f MiB)\n", b, b / 1024, a, a / 1024, c, c / 1024
  if (n > 0) printf "per connection: %.2f KiB ((after - before) / %d established)\n", (a - b) / n, n
}'
if (( open_now < CONNS * 99 / 100 )); then
  echo "FAIL: only $open_now of $CONNS connections were open at measurement" >&2
  exit 2
fi
if (( rss_after > limit_kib )); then
  echo "FAIL: $rss_after KiB > ${LIMIT_MIB} MiB with $open_now idle connections" >&2
  exit 1
fi
echo "OK: $rss_after KiB <= ${LIMIT_MIB} MiB with $open_now idle keep-alive connections"
