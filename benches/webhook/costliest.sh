#!/usr/bin/env bash
# The costliest reviews under the 6 MiB body cap, each posted once to a release
# `admission-webhook serve` (file mode, 10,000 existing entries, restarted for every case so
# that each peak RSS is its own) and run once through `admission-webhook check` offline. The
# shapes are those of policy/tests/bounded_work.rs and admission-webhook/tests/hostile.rs:
#
# - worst: 4,000 ports and 4,096 endpoints, each endpoint naming an undeclared port
# - addresses: 100,000 addresses (resolution STATIC)
# - hosts: 100,000 `.global` hosts
# - ports: 100,000 ports, one endpoint naming an undeclared port
#
# For serve: the reply's size, the server's CPU time for the review (utime+stime from
# /proc/PID/stat before and after) and its peak RSS (VmHWM) before and after the review.
# For check: wall time, CPU time and max RSS from /usr/bin/time -v, and its output's size.
#
#   benches/webhook/costliest.sh [EXISTING_ENTRIES]
set -euo pipefail
cd "$(dirname "$0")/../.."
ENTRIES=${1:-10000}
[ -x /usr/bin/time ] || scripts/ensure-apt time >/dev/null

cargo build --quiet --release -p admission-webhook
cargo build --quiet --release -p benches --example gen_service_entries
# shellcheck source=benches/lib.sh
source benches/lib.sh
BIN=target/release/admission-webhook
CAP=$((6 * 1024 * 1024))
TICK=$(getconf CLK_TCK)

target/release/examples/gen_service_entries "$ENTRIES" >"$WORK/existing.json"
$BIN certs --service bench --namespace bench --dns localhost --ip 127.0.0.1 --out "$WORK/certs" >/dev/null

# Each case as the entry alone (for check) and as the AdmissionReview of its CREATE, as
# kube-apiserver builds it (fake_apiserver::admission::review), for serve.
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]

def ports(n):
    return [{"name": f"p{i}", "number": i % 65535 + 1, "protocol": "HTTP"} for i in range(n)]

def entry(name, spec):
    # admission-webhook/tests/common's service_entry, with the case's fields over it.
    base = {
        "hosts": [f"{name}.bar.global"],
        "location": "MESH_INTERNAL",
        "ports": [{"name": "http1", "number": 8000, "protocol": "http"}],
        "resolution": "DNS",
        "addresses": ["127.255.250.1"],
        "endpoints": [{"address": "198.18.2.1", "ports": {"http1": 15443}}],
    }
    base.update(spec)
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "foo"}, "spec": base}

cases = {
    "worst": entry("worst", {
        "ports": ports(4000),
        "endpoints": [{"address": "198.18.2.1", "ports": {f"undeclared{i}": 15443}}
                      for i in range(4096)],
    }),
    "addresses": entry("addresses", {
        "resolution": "STATIC",
        "addresses": [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(100_000)],
    }),
    "hosts": entry("hosts", {"hosts": [f"h{i}.foo.global" for i in range(100_000)]}),
    "ports": entry("ports", {
        "ports": ports(100_000),
        "endpoints": [{"address": "198.18.2.1", "ports": {"nope": 15443}}],
    }),
}
for name, obj in cases.items():
    gvk = {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"}
    gvr = {"group": "networking.istio.io", "version": "v1", "resource": "serviceentries"}
    review = {
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": f"u-{name}", "kind": gvk, "resource": gvr,
            "requestKind": gvk, "requestResource": gvr,
            "name": name, "namespace": "foo", "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin",
                         "groups": ["system:masters", "system:authenticated"]},
            "object": obj, "oldObject": None, "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1",
                        "fieldManager": "kubectl-client-side-apply",
                        "fieldValidation": "Strict"},
        },
    }
    with open(f"{work}/{name}.entry.json", "w") as f:
        json.dump(obj, f, separators=(",", ":"))
    with open(f"{work}/{name}.review.json", "w") as f:
        json.dump(review, f, separators=(",", ":"))
PY

cpu_ticks() { # pid: utime+stime in clock ticks (fields 14 and 15, after the command's ")")
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
hwm_kb() { # pid
  awk '/^VmHWM:/{print $2}' "/proc/$1/status"
}

PORT=18453
ADMIN=18090
serve_case() { # name: writes "reply_bytes status cpu_ms hwm_before_kb hwm_after_kb" to $WORK/NAME.serve
  $BIN serve --listen 127.0.0.1:$PORT --admin 127.0.0.1:$ADMIN \
    --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
    --service-entries "$WORK/existing.json" --shutdown-delay 0 2>"$WORK/$1.serve.log" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do
    curl -sf http://127.0.0.1:$ADMIN/readyz >/dev/null && break
    sleep 0.1
  done
  curl -sf http://127.0.0.1:$ADMIN/readyz >/dev/null || { echo "$1: webhook never became ready" >&2; cat "$WORK/$1.serve.log" >&2; exit 1; }
  local before hwm_before after status
  hwm_before=$(hwm_kb "$pid")
  before=$(cpu_ticks "$pid")
  # HTTP/2, as kube-apiserver's Go client talks to webhooks.
  status=$(curl -s --http2 --max-time 120 --cacert "$WORK/certs/ca.crt" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/$1.review.json" \
    -o "$WORK/$1.reply.json" -w '%{http_code}' https://localhost:$PORT/validate)
  after=$(cpu_ticks "$pid")
  echo "$(stat -c %s "$WORK/$1.reply.json") $status $(((after - before) * 1000 / TICK)) $hwm_before $(hwm_kb "$pid")" >"$WORK/$1.serve"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

check_case() { # name: prints "output_bytes exit wall_s cpu_s max_rss_kb"
  local code=0
  /usr/bin/time -v -o "$WORK/$1.time" $BIN check --existing "$WORK/existing.json" \
    "$WORK/$1.entry.json" >"$WORK/$1.check.out" 2>"$WORK/$1.check.err" || code=$?
  awk -v bytes="$(stat -c %s "$WORK/$1.check.out")" -v code="$code" -F': ' '
    /User time/ { user = $2 } /System time/ { sys = $2 } /Maximum resident/ { rss = $2 }
    /Elapsed \(wall clock\)/ { n = split($2, t, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + t[i] }
    END { printf "%d %d %.2f %.2f %d\n", bytes, code, wall, user + sys, rss }' "$WORK/$1.time"
}

echo "existing entries: $ENTRIES; body cap: $CAP bytes"
echo
echo "| case | body | serve: status | reply | CPU | peak RSS before → after | check: exit | output | wall | CPU | max RSS |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for name in worst addresses hosts ports; do
  body=$(stat -c %s "$WORK/$name.review.json")
  [ "$body" -lt "$CAP" ] || { echo "$name: body of $body bytes is over the cap" >&2; exit 1; }
  serve_case "$name"
  read -r reply status cpu_ms hwm0 hwm1 <"$WORK/$name.serve"
  read -r out code wall cpu rss < <(check_case "$name")
  echo "| $name | $((body / 1024)) KiB | $status | $reply B | $cpu_ms ms | $((hwm0 / 1024)) → $((hwm1 / 1024)) MiB | $code | $out B | $wall s | $cpu s | $((rss / 1024)) MiB |"
done
echo
echo "serve: one review per fresh process (--service-entries, $ENTRIES entries), HTTP/2 over TLS with curl;"
echo "CPU from /proc/PID/stat in ${TICK} Hz ticks. check: admission-webhook check --existing (same entries)."
