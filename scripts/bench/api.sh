#!/usr/bin/env bash
# API latency benchmark: GET /api/v1/me (JWT check + user lookup in SQLite) against a release
# build on 127.0.0.1, at a fixed 1,000 requests/s and then unthrottled, with the node's RSS.
#
#   scripts/bench/api.sh [SECONDS]      # default 20 s per phase
#
# Needs `oha` (installed from crates.io if missing). Prints a Markdown table for
# docs/BENCHMARKS.md. Traffic goes only to 127.0.0.1; every phase ends by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
command -v oha >/dev/null || cargo install oha --locked
command -v python3 >/dev/null
WORK=$(mktemp -d)
trap 'kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
printf 'bench passphrase 123\n' > "$WORK/pw"
"$BIN" init --data-dir "$WORK/node" --institution Bench --api-listen 127.0.0.1:0 \
  --p2p-listen /ip4/127.0.0.1/tcp/0 --admin-password-file "$WORK/pw" >/dev/null
RUST_LOG=warn "$BIN" run --config "$WORK/node/node.toml" 2>"$WORK/node.log" &
NODE_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/node/api.addr" ] && break; sleep 0.1; done
API="https://$(cat "$WORK/node/api.addr")"
TOKEN=$(curl -s --cacert "$WORK/node/tls/api.crt" -H 'content-type: application/json' \
  -d '{"username":"admin","password":"bench passphrase 123"}' "$API/api/v1/auth/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

rss_kb() { awk "/^$1:/ {print \$2}" "/proc/$NODE_PID/status"; }
sleep 1
IDLE_RSS=$(rss_kb VmRSS)

run_phase() { # $1 = label, rest = extra oha flags
  local label=$1 out="$WORK/phase-$RANDOM.json"; shift
  oha --no-tui --insecure --output-format json -z "${SECS}s" -c 32 "$@" \
    -H "Authorization: Bearer $TOKEN" "$API/api/v1/me" > "$out"
  python3 - "$out" "$label" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
print(f"| {sys.argv[2]} | {s['requestsPerSec']:.0f} | {p['p50']*1000:.2f} | {p['p99']*1000:.2f} | "
      f"{p.get('p99.9', float('nan'))*1000:.2f} | {s['successRate']*100:.2f}% | {codes} |")
PY
}

echo "| load | req/s | p50 ms | p99 ms | p99.9 ms | success | status codes |"
echo "|---|---|---|---|---|---|---|"
run_phase "fixed 1000/s" -q 1000 --latency-correction
run_phase "unthrottled" 
PEAK_RSS=$(rss_kb VmHWM)
echo
echo "node RSS: idle $((IDLE_RSS / 1024)) MiB (${IDLE_RSS} kB), peak under load $((PEAK_RSS / 1024)) MiB (${PEAK_RSS} kB)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); oha $(oha --version | awk '{print $2}')"
