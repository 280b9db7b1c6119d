#!/usr/bin/env bash
# Throughput of global_guard against the least proxy-wasm filter and an Envoy Lua filter doing
# the same check, in one run, alternating; then the configure time and memory of global_guard
# with BIG_ENTRIES hosts. Every Envoy has one worker and answers with a local direct_response on
# 127.0.0.1. Prints figures and ratios; asserts nothing.
#
# `run.sh configure` only starts global_guard with a table of each size in SIZES and prints the
# on_configure time each VM logged ("configured in N us").
#
# env: ENVOY_BIN (default .tools/envoy/envoy/_bin/envoy), ROUNDS (4), DURATION (5s per wrk run),
#      CONNECTIONS (32), ENTRIES (1000), BIG_ENTRIES (10000), SIZES (1000 10000 100000),
#      FORM (table: the compact table globalmesh-controller writes; service_entries: whole
#      ServiceEntries).
set -euo pipefail
MODE=${1:-all}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ENVOY_BIN=${ENVOY_BIN:-$ROOT/.tools/envoy/envoy/_bin/envoy}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
ENTRIES=${ENTRIES:-1000}
BIG_ENTRIES=${BIG_ENTRIES:-10000}
SIZES=${SIZES:-1000 10000 100000}
FORM=${FORM:-table}
case "$FORM" in table | service_entries) ;; *) echo "run.sh: FORM is table or service_entries, not $FORM" >&2; exit 2 ;; esac
case "$MODE" in all | configure) ;; *) echo "run.sh: usage: run.sh [configure]" >&2; exit 2 ;; esac
HOST=${HOST:-svc-500.ns-0.global:8000}
[ -x "$ENVOY_BIN" ] || { echo "run.sh: no Envoy at $ENVOY_BIN (make setup)" >&2; exit 1; }
[ "$MODE" = configure ] || command -v wrk >/dev/null || { echo "run.sh: wrk missing (scripts/ensure-apt wrk)" >&2; exit 1; }

cargo build --quiet --release --target wasm32-wasip1 -p wasm-filter -p noop-filter
cargo build --quiet --release -p wasm-filter --example table_config
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WASM=$TARGET/wasm32-wasip1/release
GUARD=$WASM/global_guard.wasm
NOOP=$WASM/noop_filter.wasm

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# guard_config ENTRIES: the plugin configuration file for global_guard in FORM (none for
# service_entries: envoy_config.py writes those itself).
guard_config() {
  if [ "$FORM" = table ]; then
    "$TARGET/release/examples/table_config" "$1" >"$WORK/table-$1.json"
    echo "$WORK/table-$1.json"
  fi
}

# start NAME KIND ENTRIES MODULE [CONFIGURATION_FILE]: starts an Envoy, waits (bounded) for
# /ready; sets PORT_NAME, ADMIN_NAME and PID_NAME.
start() {
  local name=$1 kind=$2 entries=$3 module=$4 port admin pid
  port=$(free_port); admin=$(free_port)
  python3 "$ROOT/benches/filter/envoy_config.py" "$kind" "$port" "$admin" "$entries" "$module" ${5:+"$5"} >"$WORK/$name.json"
  "$ENVOY_BIN" -c "$WORK/$name.json" --concurrency 1 --disable-hot-restart -l info >"$WORK/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then echo "run.sh: $name Envoy exited:" >&2; tail -5 "$WORK/$name.log" >&2; exit 1; fi
    if [ "$(curl -s --max-time 2 "http://127.0.0.1:$admin/ready" || true)" = LIVE ]; then break; fi
    sleep 0.1
  done
  printf -v "PORT_$name" %s "$port"; printf -v "ADMIN_$name" %s "$admin"; printf -v "PID_$name" %s "$pid"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

echo "== machine: $(nproc) cores, $(uname -sr); $("$ENVOY_BIN" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -1); date $(date -u +%FT%TZ)"
echo "== modules: global_guard $(stat -c %s "$GUARD") bytes, noop_filter $(stat -c %s "$NOOP") bytes; global_guard configured with FORM=$FORM"

# The on_configure time per VM for one size: Envoy's main thread and its worker each run one VM.
configure_time() {
  local entries=$1 name=conf$1 pid_var=PID_conf$1
  start "$name" guard "$entries" "$GUARD" "$(guard_config "$entries")"
  echo "== global_guard with $entries hosts ($FORM, $(stat -c %s "$WORK/$name.json") bytes of Envoy config): on_configure per VM:"
  grep -o "global_guard: .*configured in [0-9]* us" "$WORK/$name.log" | sed 's/^/   /'
  echo "   RSS at ready: $(rss_kb "${!pid_var}") kB"
  kill "${!pid_var}" 2>/dev/null || true
}

if [ "$MODE" = configure ]; then
  for size in $SIZES; do configure_time "$size"; done
  exit 0
fi

start guard guard "$ENTRIES" "$GUARD" "$(guard_config "$ENTRIES")"
start noop noop 0 "$NOOP"
start lua lua "$ENTRIES" -

for name in guard noop lua; do
  port_var=PORT_$name
  ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "http://127.0.0.1:${!port_var}/")
  bad=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: nope.ns-0.global:8000" "http://127.0.0.1:${!port_var}/")
  echo "== $name: $HOST -> $ok, nope.ns-0.global:8000 -> $bad"
done

# CPU time (user + system, clock ticks) that a process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One wrk run against Envoy NAME: prints "requests/s requests cpu-ticks"; fails the run when any
# answer was not 2xx. Envoy's own CPU time per request is robust to other load on the machine;
# requests/s is not.
measure() {
  local name=$1 port_var=PORT_$1 pid_var=PID_$1 out before after
  before=$(cpu_ticks "${!pid_var}")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "Host: $HOST" "http://127.0.0.1:${!port_var}/")
  after=$(cpu_ticks "${!pid_var}")
  if grep -q "Non-2xx" <<<"$out"; then echo "run.sh: non-2xx answers: $out" >&2; exit 1; fi
  echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out") $((after - before))"
}

for name in guard noop lua; do DURATION=2s measure "$name" >/dev/null; done
echo "== wrk -t1 -c$CONNECTIONS -d$DURATION, Host: $HOST, $ROUNDS rounds, order rotating"
echo "   (per run: requests/s, and Envoy CPU microseconds per request)"
order=(guard noop lua)
RESULTS=$WORK/results
for round in $(seq "$ROUNDS"); do
  line="round $round:"
  for name in "${order[@]}"; do
    read -r rps requests ticks <<<"$(measure "$name")"
    echo "$name $rps $requests $ticks" >>"$RESULTS"
    line+=" $name $rps rps $(python3 -c "print(round($ticks * 1e6 / $(getconf CLK_TCK) / $requests, 1))") us;"
  done
  echo "$line"
  order=("${order[@]:1}" "${order[0]}")
done
python3 - "$RESULTS" "$(getconf CLK_TCK)" <<'PY'
import sys
from collections import defaultdict
rps, requests, ticks = defaultdict(list), defaultdict(int), defaultdict(int)
for line in open(sys.argv[1]):
    name, r, n, t = line.split()
    rps[name].append(float(r)); requests[name] += int(n); ticks[name] += int(t)
hz = int(sys.argv[2])
mean = {k: sum(v) / len(v) for k, v in rps.items()}
cpu = {k: ticks[k] * 1e6 / hz / requests[k] for k in ticks}
print(f"== mean requests/s: global_guard {mean['guard']:.0f}, least wasm filter {mean['noop']:.0f}, lua {mean['lua']:.0f}")
print(f"   global_guard / least wasm filter = {mean['guard'] / mean['noop']:.3f} (target >= 0.95); "
      f"global_guard / lua = {mean['guard'] / mean['lua']:.3f} (target >= 1.0)")
print(f"== Envoy CPU per request: global_guard {cpu['guard']:.1f} us, least wasm filter {cpu['noop']:.1f} us, lua {cpu['lua']:.1f} us")
print(f"   as capacity (1/CPU): global_guard / least wasm filter = {cpu['noop'] / cpu['guard']:.3f}; "
      f"global_guard / lua = {cpu['lua'] / cpu['guard']:.3f}")
PY
echo "== RSS after load (one worker): guard $(rss_kb "$PID_guard") kB, noop $(rss_kb "$PID_noop") kB, lua $(rss_kb "$PID_lua") kB"
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

configure_time "$BIG_ENTRIES"
start small noop 0 "$NOOP"
echo "== RSS at ready: least wasm filter $(rss_kb "$PID_small") kB"
