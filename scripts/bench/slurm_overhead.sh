#!/usr/bin/env bash
# Slurm executor overhead (issue 14, benchmark b): a chunked Beagle job on the committed test
# data (500 kb chunks: four Slurm jobs) through a node whose executor is Slurm, from the job's
# start to its end (QC, the chunks, ligation, result files), against the same four chunk scripts
# the node wrote, submitted by hand at once with `sbatch` and followed with `squeue` every 0.1 s. Alternating, RUNS runs each, on
# a one-machine cluster from scripts/slurm/local-cluster.sh; release build. Prints a Markdown table.
#
#   scripts/bench/slurm_overhead.sh [RUNS]     # default 3
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
WORK=$(mktemp -d)
trap 'kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; scripts/slurm/local-cluster.sh stop "$WORK/cluster"; rm -rf "$WORK"' EXIT
CONF=$(scripts/slurm/local-cluster.sh start "$WORK/cluster")
export SLURM_CONF=$CONF
printf 'bench passphrase 123\n' > "$WORK/pw"
"$BIN" init --data-dir "$WORK/node" --institution Bench --api-listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 \
  --admin-password-file "$WORK/pw" >/dev/null
T="$WORK/node/node.toml"
sed -i -e 's/^threads = .*/threads = 1/' -e 's/^kind = "local"/kind = "slurm"/' -e 's/^size_bp = .*/size_bp = 500000/' \
  -e 's/^phasing_flank_bp = .*/phasing_flank_bp = 250000/' -e 's/^memory = .*/memory = "1G"/' \
  -e 's/^poll_interval_ms = .*/poll_interval_ms = 500/' -e 's/^delete_inputs_when_done = .*/delete_inputs_when_done = false/' \
  -e "s|^\[executor.slurm\]|[executor.slurm]\nconf = \"$CONF\"\nshared_dir = \"$WORK/shared\"|" "$T"
"$BIN" panel add --config "$T" --id sim --name Sim --build hg19 --vcf tests/data/panel.vcf.gz --map tests/data/map.txt >/dev/null 2>&1
bench_start_node "$T" "$WORK/node" "$WORK/node.log"

echo "| run | chunks by hand (sbatch + squeue) s | job through the node s | ratio |"
echo "|---|---|---|---|"
for run in $(seq 1 "$RUNS"); do
  out=$("$BIN" job submit --node "$API" --token "$TOKEN" --ca-cert "$CA" --panel sim --build hg19 --engine beagle \
    --watch tests/data/targets.vcf.gz 2>/dev/null)
  id=${out%%$'\n'*}
  job=$(curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$API/api/v1/jobs/$id" | python3 -c '
import json, sys
from datetime import datetime
d = json.load(sys.stdin)
assert d["state"] == "completed", d
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(t(d["finished_at"]) - t(d["started_at"]))')
  # The node's own scripts, run again by hand: same commands, same inputs, all at once.
  logs="$WORK/shared/jobs/$id/logs"
  rm -f "$logs"/*.exit "$WORK"/chunk*.vcf.gz
  start=$(date +%s.%N)
  ids=()
  for script in "$logs"/*.beagle.log.sh; do
    ids+=("$(sbatch --parsable --cpus-per-task=1 --mem=1G --output=/dev/null "$script")")
  done
  # Polled every 0.1 s: `sbatch --wait` polls in steps of seconds, which would favour the node.
  list=$(IFS=,; echo "${ids[*]}")
  while [ -n "$(squeue -h -j "$list" 2>/dev/null)" ]; do sleep 0.1; done
  by_hand=$(echo "$start $(date +%s.%N)" | awk '{print $2 - $1}')
  awk -v r="$run" -v d="$by_hand" -v j="$job" 'BEGIN {printf "| %d | %.2f | %.2f | %.3f |\n", r, d, j, j / d}'
done
echo "machine: $(nproc) cores; one-machine Slurm cluster; 4 chunk tasks, 1 CPU each"
