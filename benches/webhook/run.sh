#!/usr/bin/env bash
# Load test of `admission-webhook serve` against nginx returning a fixed 200, over the same TLS
# set-up, in one run, alternating: wrk, POST, TLS keep-alive, 16 connections. Both servers get
# one worker thread. Prints requests/s, p99 latency and the ratio.
#
#   benches/webhook/run.sh [SECONDS_PER_ROUND] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_ROUND=${1:-10}
ROUNDS=${2:-3}
ENTRIES=10000
scripts/ensure-apt wrk nginx >/dev/null

cargo build --quiet --release -p admission-webhook
cargo build --quiet --release -p benches --example gen_service_entries
# shellcheck source=benches/lib.sh
source benches/lib.sh

target/release/examples/gen_service_entries "$ENTRIES" >"$WORK/existing.json"
target/release/admission-webhook certs --service bench --namespace bench --dns localhost --ip 127.0.0.1 --out "$WORK/certs" >/dev/null

WEBHOOK_PORT=18443
NGINX_PORT=18444
TOKIO_WORKER_THREADS=1 target/release/admission-webhook serve \
  --listen 127.0.0.1:$WEBHOOK_PORT --admin 127.0.0.1:18080 \
  --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
  --service-entries "$WORK/existing.json" 2>"$WORK/webhook.log" &
PIDS+=($!)

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $WORK/certs/tls.crt;
    ssl_certificate_key $WORK/certs/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      default_type application/json;
      return 200 '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"bench","allowed":true}}';
    }
  }
}
NGINX
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr" &
PIDS+=($!)

for _ in $(seq 100); do
  if curl -sf http://127.0.0.1:18080/readyz >/dev/null && curl -sfk https://127.0.0.1:$NGINX_PORT/ >/dev/null; then break; fi
  sleep 0.1
done
entries=$(curl -s http://127.0.0.1:18080/metrics | awk '/^admission_catalog_entries /{print $2}')
echo "webhook holds $entries existing ServiceEntries"

# A CREATE of a new, valid ServiceEntry, as kube-apiserver sends it.
cat >"$WORK/review.json" <<'JSON'
{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"bench","kind":{"group":"networking.istio.io","version":"v1","kind":"ServiceEntry"},"resource":{"group":"networking.istio.io","version":"v1","resource":"serviceentries"},"requestKind":{"group":"networking.istio.io","version":"v1","kind":"ServiceEntry"},"requestResource":{"group":"networking.istio.io","version":"v1","resource":"serviceentries"},"name":"bench","namespace":"foo","operation":"CREATE","userInfo":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"object":{"apiVersion":"networking.istio.io/v1","kind":"ServiceEntry","metadata":{"name":"bench","namespace":"foo"},"spec":{"hosts":["bench.foo.global"],"location":"MESH_INTERNAL","ports":[{"name":"http1","number":8000,"protocol":"http"}],"resolution":"DNS","addresses":["240.240.200.1"],"endpoints":[{"address":"198.18.2.1","ports":{"http1":15443}}]}},"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}
JSON
cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$WORK/review.json", "r")
wrk.body = f:read("*a")
f:close()
LUA

# Check the webhook answers what we think before measuring it.
answer=$(curl -s --cacert "$WORK/certs/ca.crt" -H 'Content-Type: application/json' --data-binary @"$WORK/review.json" https://localhost:$WEBHOOK_PORT/validate)
grep -q '"allowed":true' <<<"$answer" || { echo "unexpected webhook answer: $answer" >&2; exit 1; }

run() { # name port
  wrk -t1 -c16 -d"${SECONDS_PER_ROUND}s" --latency -s "$WORK/post.lua" "https://127.0.0.1:$2/validate" >"$WORK/wrk.out"
  rps=$(awk '/^Requests\/sec:/{print $2}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%"{print $2}' "$WORK/wrk.out")
  errors=$(awk '/Non-2xx|Socket errors/{print}' "$WORK/wrk.out" | tr '\n' ' ')
  echo "$1 $rps $p99 $errors" | tee -a "$WORK/results"
}

echo "round server requests/s p99"
for round in $(seq "$ROUNDS"); do
  echo -n "$round "; run webhook $WEBHOOK_PORT
  echo -n "$round "; run nginx $NGINX_PORT
done

awk '
  { sum[$1] += $2; n[$1]++ }
  END {
    w = sum["webhook"] / n["webhook"]; g = sum["nginx"] / n["nginx"];
    printf "mean requests/s: webhook %.0f, nginx %.0f, ratio %.1f%%\n", w, g, 100 * w / g
  }' "$WORK/results"
echo "webhook review latency from its own histogram:"
curl -s http://127.0.0.1:18080/metrics | grep -E '^admission_review_duration_seconds_(count|sum)'
