#!/usr/bin/env bash
# dns-shim against unbound on loopback, in one run, alternating:
#   1. `.global` answers: dns-shim with one UDP thread vs unbound with one thread (local-data
#      for the same name), and dns-shim with its default threads; CPU seconds (user, system)
#      of each server during its run;
#   2. the forwarded path: a name asked through dns-shim vs asked of the upstream directly;
#   3. a flood of forwarded queries at an upstream that never answers, through dns-shim and
#      through unbound (forward-zone) in the same position: each server's peak RSS during it,
#      and the p99 and losses of local answers asked at the same time;
#   4. 100,000 ServiceEntries: load time, reload time and RSS (sampled during the reload).
# Prints a table to stdout. Bounded: ROUNDS x DURATION seconds per measurement.
#   5. with CALLGRIND=1: instructions per query (valgrind --tool=callgrind), which unlike
#      times do not depend on what else the machine is doing.
# Usage: benches/dns/run.sh   (env: DURATION=10 ROUNDS=3 CLIENTS=4 ENTRIES=100000 FILES=100
#        CALLGRIND=0 FLOOD_QPS=20000 FLOOD=1)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-4}"
ENTRIES="${ENTRIES:-100000}"
FILES="${FILES:-100}"
LATENCY_QPS="${LATENCY_QPS:-2000}"
CALLGRIND="${CALLGRIND:-0}"
SHIM_PORT=25390 UNBOUND_PORT=25391 ADMIN_PORT=25392 BIG_PORT=25393 BIG_ADMIN=25394
HICKORY_PORT=25395 HICKORY_ADMIN=25396 CG_PORT=25397 CG_ADMIN=25398
ONE_PORT=25399 ONE_ADMIN=25400 HOLE_PORT=25401 FLOOD_SHIM=25402 FLOOD_ADMIN=25403 FLOOD_UNBOUND=25404
FLOOD_QPS="${FLOOD_QPS:-20000}"
FLOOD="${FLOOD:-1}"

for tool in dnsperf unbound dig; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (make setup-dns)" >&2; exit 1; }
done

cargo build --quiet --release -p dns-shim --manifest-path "$ROOT/Cargo.toml"
SHIM="${CARGO_TARGET_DIR:-$ROOT/target}/release/dns-shim"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

cat >"$WORK/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$UNBOUND_PORT
  port: $UNBOUND_PORT
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$WORK"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  so-rcvbuf: 4m
  so-sndbuf: 4m
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "bar.global." static
  local-data: "httpbin.bar.global. 30 IN A 127.255.0.2"
  local-zone: "up.test." static
  local-data: "www.up.test. 300 IN A 192.0.2.10"
remote-control:
  control-enable: no
CONF
unbound -d -c "$WORK/unbound.conf" 2>/dev/null &
PIDS+=($!)

"$SHIM" --service-entries "$ROOT/tests/data/seed/serviceentry-direct.yaml" \
  --listen "127.0.0.1:$SHIM_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
  --upstream "127.0.0.1:$UNBOUND_PORT" --search-domain svc.cluster.local >"$WORK/shim.out" 2>"$WORK/shim.err" &
SHIM_PID=$!
PIDS+=($SHIM_PID)
# One UDP thread, as unbound has one thread.
"$SHIM" --service-entries "$ROOT/tests/data/seed/serviceentry-direct.yaml" \
  --listen "127.0.0.1:$ONE_PORT" --admin "127.0.0.1:$ONE_ADMIN" --udp-sockets 1 --threads 1 \
  --upstream "127.0.0.1:$UNBOUND_PORT" --search-domain svc.cluster.local >/dev/null 2>&1 &
ONE_PID=$!
PIDS+=($ONE_PID)
# The same with hickory-server's own UDP loop (Server::register_socket), for comparison.
"$SHIM" --service-entries "$ROOT/tests/data/seed/serviceentry-direct.yaml" \
  --listen "127.0.0.1:$HICKORY_PORT" --admin "127.0.0.1:$HICKORY_ADMIN" --udp-loop hickory \
  --upstream "127.0.0.1:$UNBOUND_PORT" --search-domain svc.cluster.local >/dev/null 2>&1 &
PIDS+=($!)

for _ in $(seq 100); do
  # Answers captured, not piped into grep -q (which fails at random under pipefail).
  if [[ $(dig +short +tries=1 +time=1 @127.0.0.1 -p "$SHIM_PORT" httpbin.bar.global) == *127.255.0.2* ]] &&
     [[ $(dig +short +tries=1 +time=1 @127.0.0.1 -p "$HICKORY_PORT" httpbin.bar.global) == *127.255.0.2* ]] &&
     [[ $(dig +short +tries=1 +time=1 @127.0.0.1 -p "$ONE_PORT" httpbin.bar.global) == *127.255.0.2* ]] &&
     [[ $(dig +short +tries=1 +time=1 @127.0.0.1 -p "$UNBOUND_PORT" www.up.test) == *192.0.2.10* ]]; then
    break
  fi
  sleep 0.1
done

echo "httpbin.bar.global A" >"$WORK/global.txt"
echo "www.up.test A" >"$WORK/forward.txt"

# user and system CPU ticks (1/100 s) of a process
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# dnsperf PORT FILE [PID]: prints "qps sent lost avg_latency_us user_s sys_s" (CPU of PID)
perf() {
  local port=$1 file=$2 pid=${3:-}
  local u0=0 s0=0 u1=0 s1=0
  [ -n "$pid" ] && read -r u0 s0 < <(ticks "$pid")
  local out
  out=$(dnsperf -s 127.0.0.1 -p "$port" -d "$file" -c "$CLIENTS" -l "$DURATION" -q 200 -t 2 2>&1 |
    awk '/Queries sent:/ {sent=$3} /Queries lost:/ {lost=$3} /Queries per second:/ {qps=$4}
         /Average Latency/ {lat=$4*1e6} END {printf "%.0f %d %d %.0f", qps, sent, lost, lat}')
  [ -n "$pid" ] && read -r u1 s1 < <(ticks "$pid")
  echo "$out $(awk -v a="$u0" -v b="$u1" 'BEGIN {printf "%.2f", (b-a)/100}') $(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", (b-a)/100}')"
}

# median latency in microseconds at a fixed, moderate rate (dnsperf -v lists every answer)
median() {
  local port=$1 file=$2
  dnsperf -s 127.0.0.1 -p "$port" -d "$file" -c 1 -l 5 -Q "$LATENCY_QPS" -t 2 -v 2>/dev/null |
    awk '$1 == ">" {print $NF * 1e6}' | sort -n | awk '{v[NR]=$1} END {if (NR) printf "%.0f %d\n", v[int((NR+1)/2)], NR; else print "NA 0"}'
}

echo "# dns-shim benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "# dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}'), -c $CLIENTS -q 200 -l $DURATION, $ROUNDS rounds alternating"
echo
UNBOUND_PID=${PIDS[0]}
row() { printf "%-6s %-27s %8s %9s %6s %7s %7s %7s\n" "$@"; }
row round target qps sent lost avg_us user_s sys_s
for round in $(seq "$ROUNDS"); do
  read -r q s l a u y < <(perf "$UNBOUND_PORT" "$WORK/global.txt" "$UNBOUND_PID"); row "$round" "unbound .global (1 thread)" "$q" "$s" "$l" "$a" "$u" "$y"
  read -r q s l a u y < <(perf "$ONE_PORT" "$WORK/global.txt" "$ONE_PID");       row "$round" "dns-shim .global (1 thread)" "$q" "$s" "$l" "$a" "$u" "$y"
  read -r q s l a u y < <(perf "$SHIM_PORT" "$WORK/global.txt" "$SHIM_PID");     row "$round" "dns-shim .global (default)" "$q" "$s" "$l" "$a" "$u" "$y"
  read -r q s l a u y < <(perf "$HICKORY_PORT" "$WORK/global.txt");              row "$round" "(hickory loop) .global" "$q" "$s" "$l" "$a" "$u" "$y"
  read -r q s l a u y < <(perf "$UNBOUND_PORT" "$WORK/forward.txt");             row "$round" "unbound direct" "$q" "$s" "$l" "$a" "$u" "$y"
  read -r q s l a u y < <(perf "$SHIM_PORT" "$WORK/forward.txt");                row "$round" "dns-shim forwarded" "$q" "$s" "$l" "$a" "$u" "$y"
done
echo
echo "round  path                        median_us  answers   (one client, ${LATENCY_QPS} qps, 5 s)"
for round in $(seq "$ROUNDS"); do
  read -r m n < <(median "$UNBOUND_PORT" "$WORK/forward.txt"); printf "%-6s %-27s %9s %8s\n" "$round" "upstream direct" "$m" "$n"
  read -r m n < <(median "$SHIM_PORT" "$WORK/forward.txt");    printf "%-6s %-27s %9s %8s\n" "$round" "through dns-shim" "$m" "$n"
  read -r m n < <(median "$UNBOUND_PORT" "$WORK/global.txt");  printf "%-6s %-27s %9s %8s\n" "$round" "unbound .global" "$m" "$n"
  read -r m n < <(median "$SHIM_PORT" "$WORK/global.txt");     printf "%-6s %-27s %9s %8s\n" "$round" "dns-shim .global" "$m" "$n"
done

if [ "$FLOOD" = 1 ]; then
# A flood of forwarded queries at an upstream that takes UDP and never answers, at FLOOD_QPS
# for DURATION seconds, through dns-shim (defaults) and through unbound forwarding the same
# names to the same upstream; meanwhile a second client asks the local name at 1,000 qps.
python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(('127.0.0.1', $HOLE_PORT))
while True:
    s.recv(4096)
" &
PIDS+=($!)
sed -e "s/$UNBOUND_PORT/$FLOOD_UNBOUND/g" "$WORK/unbound.conf" | sed '/^remote-control:/,$d' >"$WORK/unbound-flood.conf"
cat >>"$WORK/unbound-flood.conf" <<CONF
  do-not-query-localhost: no
forward-zone:
  name: "flood.example."
  forward-addr: 127.0.0.1@$HOLE_PORT
remote-control:
  control-enable: no
CONF
unbound -d -c "$WORK/unbound-flood.conf" 2>/dev/null &
FLOOD_UNBOUND_PID=$!
PIDS+=($FLOOD_UNBOUND_PID)
"$SHIM" --service-entries "$ROOT/tests/data/seed/serviceentry-direct.yaml" \
  --listen "127.0.0.1:$FLOOD_SHIM" --admin "127.0.0.1:$FLOOD_ADMIN" \
  --upstream "127.0.0.1:$HOLE_PORT" >/dev/null 2>&1 &
FLOOD_SHIM_PID=$!
PIDS+=($FLOOD_SHIM_PID)
for _ in $(seq 100); do
  if [[ $(dig +short +tries=1 +time=1 @127.0.0.1 -p "$FLOOD_SHIM" httpbin.bar.global) == *127.255.0.2* ]] &&
     [[ $(dig +short +tries=1 +time=1 @127.0.0.1 -p "$FLOOD_UNBOUND" httpbin.bar.global) == *127.255.0.2* ]]; then
    break
  fi
  sleep 0.1
done
python3 -c "
for i in range(200000):
    print(f'q{i}.flood.example A')
" >"$WORK/flood.txt"
# flood PORT PID: prints "peak_rss_mb local_p99_us local_answers local_lost"
flood() {
  local port=$1 pid=$2
  dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/flood.txt" -c 4 -l "$DURATION" -Q "$FLOOD_QPS" -q 20000 -t 1 >/dev/null 2>&1 &
  local flooder=$!
  dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/global.txt" -c 1 -l "$((DURATION - 1))" -Q 1000 -t 2 -v >"$WORK/local.out" 2>&1 &
  local prober=$!
  local peak=0 rss
  while kill -0 "$flooder" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.2
  done
  wait "$prober" 2>/dev/null || true
  local p99
  p99=$(awk '$1 == ">" {print $NF * 1e6}' "$WORK/local.out" | sort -n | awk '{v[NR]=$1} END {if (NR) printf "%.0f", v[int(NR*0.99)]; else print "NA"}')
  local n lost
  n=$(awk '/Queries completed:/ {print $3}' "$WORK/local.out")
  lost=$(awk '/Queries lost:/ {print $3}' "$WORK/local.out")
  echo "$((peak / 1024)) $p99 $n $lost"
}
echo
echo "# forwarded flood at ${FLOOD_QPS} qps for ${DURATION} s at an upstream that never answers; local name at 1,000 qps meanwhile"
echo "round  server       peak_rss_mb  local_p99_us  local_answers  local_lost"
for round in $(seq "$ROUNDS"); do
  read -r r p n l < <(flood "$FLOOD_UNBOUND" "$FLOOD_UNBOUND_PID"); printf "%-6s %-12s %11s %13s %14s %11s\n" "$round" unbound "$r" "$p" "$n" "$l"
  read -r r p n l < <(flood "$FLOOD_SHIM" "$FLOOD_SHIM_PID");       printf "%-6s %-12s %11s %13s %14s %11s\n" "$round" dns-shim "$r" "$p" "$n" "$l"
done
overload=$(curl -s "http://127.0.0.1:$FLOOD_ADMIN/metrics" | awk '/^dns_forward_overload_total/ {s += $2} END {print s + 0}')
echo "dns-shim forwarded queries answered SERVFAIL at the in-flight cap: $overload"
fi

# 100k ServiceEntries in FILES files (a ConfigMap holds at most 1 MiB, so a large catalog is
# many files; FILES=1 puts them all in one)
python3 - "$WORK/big" "$ENTRIES" "$FILES" <<'PY'
import os, sys
path, n, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(path, exist_ok=True)
per = -(-n // files)
for k in range(files):
    with open(os.path.join(path, f"entries-{k:04}.yaml"), "w") as f:
        for i in range(k * per, min(n, (k + 1) * per)):
            f.write(f"""---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc{i}
  namespace: ns{i % 100}
spec:
  hosts:
  - svc{i}.ns{i % 100}.global
  location: MESH_INTERNAL
  ports:
  - name: http1
    number: 8000
    protocol: http
  resolution: DNS
  addresses:
  - 240.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}
  endpoints:
  - address: 198.18.2.1
    ports:
      http1: 15443
""")
PY
echo
echo "# $ENTRIES ServiceEntries in $FILES files, $(du -sm "$WORK/big" | cut -f1) MB of YAML"
"$SHIM" --service-entries "$WORK/big" --listen "127.0.0.1:$BIG_PORT" --admin "127.0.0.1:$BIG_ADMIN" \
  --upstream "127.0.0.1:$UNBOUND_PORT" --search-domain svc.cluster.local >/dev/null 2>"$WORK/big.err" &
BIG_PID=$!
PIDS+=($BIG_PID)
for _ in $(seq 600); do
  grep -q "service entries loaded" "$WORK/big.err" && break
  sleep 0.1
done
load_ms=$(grep -m1 "service entries loaded" "$WORK/big.err" | sed -E 's/.*elapsed_ms=([0-9.]+).*/\1/')
read_ms=$(grep -m1 "service entries loaded" "$WORK/big.err" | sed -E 's/.*read_ms=([0-9.]+).*/\1/')
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$BIG_PID/status")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$BIG_PID/status")
answer=$(dig +short +tries=1 +time=2 @127.0.0.1 -p "$BIG_PORT" "svc$((ENTRIES - 1)).ns$(((ENTRIES - 1) % 100)).global")
touch "$WORK/big/entries-0000.yaml"
during_kb=0
for _ in $(seq 600); do
  [ "$(grep -c "service entries loaded" "$WORK/big.err")" -ge 2 ] && break
  now_kb=$(awk '/VmRSS/ {print $2}' "/proc/$BIG_PID/status")
  [ "$now_kb" -gt "$during_kb" ] && during_kb=$now_kb
  sleep 0.1
done
reload_ms=$(grep "service entries loaded" "$WORK/big.err" | sed -n 2p | sed -E 's/.*elapsed_ms=([0-9.]+).*/\1/')
rss2_kb=$(awk '/VmRSS/ {print $2}' "/proc/$BIG_PID/status")
hwm2_kb=$(awk '/VmHWM/ {print $2}' "/proc/$BIG_PID/status")
echo "load_ms=$load_ms (of which reading and parsing: $read_ms) reload_ms=$reload_ms"
echo "rss_after_load_mb=$((rss_kb / 1024)) peak_rss_after_load_mb=$((hwm_kb / 1024))"
echo "rss_after_reload_mb=$((rss2_kb / 1024)) peak_rss_after_reload_mb=$((hwm2_kb / 1024)) max_rss_sampled_during_reload_mb=$((during_kb / 1024))"
echo "last entry answers: $answer"

if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
  echo
  echo "# instructions per query under callgrind (difference of a 6,000- and a 2,000-query run)"
  # callgrind_run NAME FILE N COMMAND...: total instructions of COMMAND while it answers N queries
  callgrind_run() {
    local name=$1 file=$2 n=$3; shift 3
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$name.$n" "$@" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
      dig +short +tries=1 +time=1 @127.0.0.1 -p "$CG_PORT" httpbin.bar.global >/dev/null 2>&1 && break
      sleep 0.3
    done
    dnsperf -s 127.0.0.1 -p "$CG_PORT" -d "$file" -c 1 -q 20 -n "$n" -t 5 >/dev/null 2>&1
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.$name.$n"
  }
  sed -e "s/$UNBOUND_PORT/$CG_PORT/g" "$WORK/unbound.conf" >"$WORK/unbound-cg.conf"
  shim_cg=("$SHIM" --service-entries "$ROOT/tests/data/seed/serviceentry-direct.yaml" --listen "127.0.0.1:$CG_PORT"
           --admin "127.0.0.1:$CG_ADMIN" --upstream "127.0.0.1:$UNBOUND_PORT" --threads 1 --udp-sockets 1)
  for variant in "unbound-local global.txt unbound -d -c $WORK/unbound-cg.conf" \
                 "dns-shim-local global.txt ${shim_cg[*]}" \
                 "dns-shim-hickory-loop-local global.txt ${shim_cg[*]} --udp-loop hickory" \
                 "dns-shim-forwarded forward.txt ${shim_cg[*]}"; do
    read -r name file cmd <<<"$variant"
    small=$(callgrind_run "$name" "$WORK/$file" 2000 $cmd)
    large=$(callgrind_run "$name" "$WORK/$file" 6000 $cmd)
    echo "$name: $(( (large - small) / 4000 )) instructions/query"
  done
fi
