#!/usr/bin/env bash
# Job overhead (issue 4): wall time of a Beagle job through the node's API (from the job's
# start to its end, queue wait excluded: QC, Beagle, result files, summary) vs the same Beagle
# command run directly on the same files. Alternating, 3 runs each; release build; committed
# test data (1,000-sample panel, 100 targets, 2 Mb). Prints a Markdown table.
#
#   scripts/bench/job_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
WORK=$(mktemp -d)
trap 'kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
printf 'bench passphrase 123\n' > "$WORK/pw"
"$BIN" init --data-dir "$WORK/node" --institution Bench --api-listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 \
  --admin-password-file "$WORK/pw" >/dev/null
"$BIN" panel add --config "$WORK/node/node.toml" --id sim --name Sim --build hg19 --population AFR \
  --vcf tests/data/panel.vcf.gz --map tests/data/map.txt >/dev/null 2>&1
bench_start_node "$WORK/node/node.toml" "$WORK/node" "$WORK/node.log"

echo "| run | direct Beagle s | job through the API s | ratio |"
echo "|---|---|---|---|"
for run in 1 2 3; do
  start=$(date +%s.%N)
  java -Xmx2g -jar /usr/share/beagle/beagle.jar ref="$WORK/node/panels/sim/20.bref3" gt=tests/data/targets.vcf.gz \
    out="$WORK/direct" nthreads=2 seed=-99999 impute=true gp=true map=tests/data/map.txt >/dev/null
  direct=$(echo "$start $(date +%s.%N)" | awk '{print $2 - $1}')
  submitted=$("$BIN" job submit --node "$API" --token "$TOKEN" --ca-cert "$CA" --panel sim --build hg19 --watch tests/data/targets.vcf.gz 2>/dev/null)
  id=${submitted%%$'\n'*}
  job=$(curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$API/api/v1/jobs/$id" | python3 -c '
import json, sys
from datetime import datetime
d = json.load(sys.stdin)
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(t(d["finished_at"]) - t(d["started_at"]))')
  awk -v r="$run" -v d="$direct" -v j="$job" 'BEGIN {printf "| %d | %.2f | %.2f | %.3f |\n", r, d, j, j / d}'
done
echo "machine: $(nproc) cores"
