#!/usr/bin/env bash
# Throughput of global_guard against the least proxy-wasm filter and an Envoy Lua filter doing
# the same check, in one run, alternating; then the configure time and memory of global_guard
# with 10,000 ServiceEntries. Every Envoy has one worker and answers with a local
# direct_response on 127.0.0.1. Prints figures and ratios; asserts nothing.
#
# env: ENVOY_BIN (default .tools/envoy/envoy/_bin/envoy), ROUNDS (4), DURATION (5s per wrk run),
#      CONNECTIONS (32), ENTRIES (1000), BIG_ENTRIES (10000).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ENVOY_BIN=${ENVOY_BIN:-$ROOT/.tools/envoy/envoy/_bin/envoy}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
ENTRIES=${ENTRIES:-1000}
BIG_ENTRIES=${BIG_ENTRIES:-10000}
HOST="svc-500.ns-0.global:8000"
[ -x "$ENVOY_BIN" ] || { echo "run.sh: no Envoy at $ENVOY_BIN (make setup)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "run.sh: wrk missing (scripts/ensure-apt wrk)" >&2; exit 1; }

cargo build --quiet --release --target wasm32-wasip1 -p wasm-filter -p noop-filter
WASM=${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip1/release
GUARD=$WASM/global_guard.wasm
NOOP=$WASM/noop_filter.wasm

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME KIND ENTRIES MODULE: starts an Envoy, waits (bounded) for /ready; sets PORT_NAME,
# ADMIN_NAME and PID_NAME.
start() {
  local name=$1 kind=$2 entries=$3 module=$4 port admin pid
  port=$(free_port); admin=$(free_port)
  python3 "$ROOT/benches/filter/envoy_config.py" "$kind" "$port" "$admin" "$entries" "$module" >"$WORK/$name.json"
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
echo "== modules: global_guard $(stat -c %s "$GUARD") bytes, noop_filter $(stat -c %s "$NOOP") bytes"

start guard guard "$ENTRIES" "$GUARD"
start noop noop 0 "$NOOP"
start lua lua "$ENTRIES" -

for name in guard noop lua; do
  port_var=PORT_$name
  ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "http://127.0.0.1:${!port_var}/")
  bad=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: nope.ns-0.global:8000" "http://127.0.0.1:${!port_var}/")
  echo "== $name: $HOST -> $ok, nope.ns-0.global:8000 -> $bad"
done

# One wrk run: prints requests/s; fails the run when any answer was not 2xx.
measure() {
  local port=$1 out
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "Host: $HOST" "http://127.0.0.1:$port/")
  if grep -q "Non-2xx" <<<"$out"; then echo "run.sh: non-2xx answers: $out" >&2; exit 1; fi
  awk '/^Requests\/sec/ {print $2}' <<<"$out"
}

for name in guard noop lua; do port_var=PORT_$name; DURATION=2s measure "${!port_var}" >/dev/null; done
declare -A SUM=([guard]=0 [noop]=0 [lua]=0)
echo "== wrk -t1 -c$CONNECTIONS -d$DURATION, Host: $HOST, $ROUNDS rounds, order rotating"
order=(guard noop lua)
for round in $(seq "$ROUNDS"); do
  line="round $round:"
  for name in "${order[@]}"; do
    port_var=PORT_$name
    rps=$(measure "${!port_var}")
    SUM[$name]=$(python3 -c "print(${SUM[$name]} + $rps)")
    line+=" $name $rps"
  done
  echo "$line"
  order=("${order[@]:1}" "${order[0]}")
done
python3 - "${SUM[guard]}" "${SUM[noop]}" "${SUM[lua]}" "$ROUNDS" <<'PY'
import sys
guard, noop, lua, rounds = (float(x) for x in sys.argv[1:])
g, n, l = guard / rounds, noop / rounds, lua / rounds
print(f"== mean requests/s: global_guard {g:.0f}, least wasm filter {n:.0f}, lua {l:.0f}")
print(f"== global_guard / least wasm filter = {g / n:.3f} (target >= 0.95); global_guard / lua = {g / l:.3f} (target >= 1.0)")
PY
echo "== RSS after load (one worker): guard $(rss_kb "$PID_guard") kB, noop $(rss_kb "$PID_noop") kB, lua $(rss_kb "$PID_lua") kB"
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

start big guard "$BIG_ENTRIES" "$GUARD"
start small noop 0 "$NOOP"
echo "== global_guard with $BIG_ENTRIES ServiceEntries ($(stat -c %s "$WORK/big.json") bytes of Envoy config): on_configure per VM:"
grep -o "global_guard: .*configured in [0-9]* us" "$WORK/big.log" | sed 's/^/   /'
echo "== RSS at ready: global_guard/$BIG_ENTRIES $(rss_kb "$PID_big") kB, least wasm filter $(rss_kb "$PID_small") kB"
