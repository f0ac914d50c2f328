#!/usr/bin/env bash
# Chunked vs unchunked (issue 14, benchmark a): the same Beagle job on a simulated chromosome of
# LENGTH_MB, once on a node that runs it whole (one chunk) and once on a node with the default
# chunking (20 Mb cores, 5 Mb phasing flanks), both with the default engine settings and the
# local executor. Wall time is the job's started_at..finished_at; CPU time is what the node and
# the engines it waited for used during the job (utime+stime+cutime+cstime of the node process
# from /proc). Alternating, RUNS runs each; release build. Prints a Markdown table.
#
#   scripts/bench/chunking.sh [LENGTH_MB] [RUNS]     # default 45 2
#   FLANK_BP=1500000 scripts/bench/chunking.sh       # another phasing flank for the chunked node
set -euo pipefail
cd "$(dirname "$0")/../.."
LENGTH_MB=${1:-45}
RUNS=${2:-2}
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

scripts/simulate.sh --out "$WORK/data" --chrom 20 --start 0 --length-mb "$LENGTH_MB" --panel 500 --targets 50 >/dev/null
echo "data: $LENGTH_MB Mb, $(zcat "$WORK/data/panel.vcf.gz" | grep -vc '^#') panel sites, 500 panel samples, 50 targets" >&2
printf 'bench passphrase 123\n' > "$WORK/pw"

declare -A API TOKEN PID
for kind in whole chunked; do
  dir="$WORK/$kind"
  "$BIN" init --data-dir "$dir" --institution "Bench $kind" --api-listen 127.0.0.1:0 \
    --p2p-listen /ip4/127.0.0.1/tcp/0 --admin-password-file "$WORK/pw" >/dev/null
  if [ "$kind" = whole ]; then sed -i 's/^size_bp = .*/size_bp = 1000000000/' "$dir/node.toml"; fi
  if [ "$kind" = chunked ] && [ -n "${FLANK_BP:-}" ]; then
    sed -i "s/^phasing_flank_bp = .*/phasing_flank_bp = $FLANK_BP/" "$dir/node.toml"
  fi
  "$BIN" panel add --config "$dir/node.toml" --id sim --name Sim --build hg19 \
    --vcf "$WORK/data/panel.vcf.gz" >/dev/null 2>&1
  RUST_LOG=warn "$BIN" run --config "$dir/node.toml" 2>"$WORK/$kind.log" &
  PID[$kind]=$!
  PIDS+=("$!")
  for _ in $(seq 1 300); do [ -s "$dir/api.addr" ] && break; sleep 0.1; done
  API[$kind]="https://$(cat "$dir/api.addr")"
  ca="$dir/tls/api.crt"
  TOKEN[$kind]=$(bench_api_token "${API[$kind]}" "$ca")
done

cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15 + $16 + $17) / hz}' "/proc/$1/stat"; }

echo "| run | whole: wall s | whole: CPU s | chunked: wall s | chunked: CPU s | chunks | CPU ratio | wall ratio |"
echo "|---|---|---|---|---|---|---|---|"
for run in $(seq 1 "$RUNS"); do
  declare -A WALL CPU
  for kind in whole chunked; do
    ca="$WORK/$kind/tls/api.crt"
    before=$(cpu_secs "${PID[$kind]}")
    out=$("$BIN" job submit --node "${API[$kind]}" --token "${TOKEN[$kind]}" --ca-cert "$ca" --panel sim \
      --build hg19 --watch "$WORK/data/targets.vcf.gz" 2>/dev/null)
    id=${out%%$'\n'*}
    after=$(cpu_secs "${PID[$kind]}")
    CPU[$kind]=$(echo "$before $after" | awk '{print $2 - $1}')
    read -r WALL[$kind] CHUNKS < <(curl -s --cacert "$ca" -H "Authorization: Bearer ${TOKEN[$kind]}" \
      "${API[$kind]}/api/v1/jobs/$id" | python3 -c '
import json, sys
from datetime import datetime
d = json.load(sys.stdin)
assert d["state"] == "completed", d
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(t(d["finished_at"]) - t(d["started_at"]), len(d["qc_report"]["chunks"]))')
  done
  awk -v r="$run" -v ww="${WALL[whole]}" -v wc="${CPU[whole]}" -v cw="${WALL[chunked]}" -v cc="${CPU[chunked]}" -v n="$CHUNKS" \
    'BEGIN {printf "| %d | %.1f | %.1f | %.1f | %.1f | %d | %.3f | %.3f |\n", r, ww, wc, cw, cc, n, cc / wc, cw / ww}'
done
echo "machine: $(nproc) cores; engines.threads = 2, executor slots = 0 (auto); chunked node's phasing flank: ${FLANK_BP:-5000000} bp"
