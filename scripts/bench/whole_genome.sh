#!/usr/bin/env bash
# A whole-genome-sized job (issue 14, benchmark c): 22 simulated chromosomes of LENGTH_MB each
# (PANEL panel samples, TARGETS targets), one panel of 22 chromosomes, one submission of the 22
# target files, through the local executor on this machine's cores (default engine settings).
# Reports the job's wall time, the chunks it ran and the node's peak resident memory (VmHWM).
# Release build.
#
#   scripts/bench/whole_genome.sh [LENGTH_MB] [PANEL] [TARGETS]     # default 5 300 30
set -euo pipefail
cd "$(dirname "$0")/../.."
LENGTH_MB=${1:-5}
PANEL=${2:-300}
TARGETS=${3:-30}
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
WORK=$(mktemp -d)
trap 'kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
NODE_PID=
for c in $(seq 1 22); do
  scripts/simulate.sh --out "$WORK/chr$c" --chrom "$c" --start 0 --length-mb "$LENGTH_MB" --panel "$PANEL" \
    --targets "$TARGETS" --seed $((20261202 + c)) >/dev/null
done
printf 'bench passphrase 123\n' > "$WORK/pw"
"$BIN" init --data-dir "$WORK/node" --institution Bench --api-listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 \
  --admin-password-file "$WORK/pw" >/dev/null
vcfs=()
for c in $(seq 1 22); do vcfs+=(--vcf "$WORK/chr$c/panel.vcf.gz"); done
"$BIN" panel add --config "$WORK/node/node.toml" --id genome --name Genome --build hg19 "${vcfs[@]}" >/dev/null 2>&1
bench_start_node "$WORK/node/node.toml" "$WORK/node" "$WORK/node.log"
targets=()
for c in $(seq 1 22); do cp "$WORK/chr$c/targets.vcf.gz" "$WORK/chr$c.targets.vcf.gz"; targets+=("$WORK/chr$c.targets.vcf.gz"); done
out=$("$BIN" job submit --node "$API" --token "$TOKEN" --ca-cert "$CA" --panel genome --build hg19 --watch "${targets[@]}" 2>/dev/null)
id=${out%%$'\n'*}
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$NODE_PID/status")
echo "| chromosomes | Mb each | panel samples | targets | chunks | job wall s | node peak RSS MB |"
echo "|---|---|---|---|---|---|---|"
curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$API/api/v1/jobs/$id" | python3 -c '
import json, sys
from datetime import datetime
d = json.load(sys.stdin)
assert d["state"] == "completed", d.get("error")
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
length, panel, targets, hwm = sys.argv[1:5]
chunks = len(d["qc_report"]["chunks"])
wall = t(d["finished_at"]) - t(d["started_at"])
print(f"| 22 | {length} | {panel} | {targets} | {chunks} | {wall:.1f} | {int(hwm) / 1024:.0f} |")' \
  "$LENGTH_MB" "$PANEL" "$TARGETS" "$hwm"
echo "machine: $(nproc) cores; engines.threads = 2, executor slots = 0 (auto)"
