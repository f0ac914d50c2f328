#!/usr/bin/env bash
# Forwarded job vs local job (issue 5): wall time of the same Beagle job submitted at the node
# hosting the panel (B) and at another node (A), which forwards it to B, sends the input,
# follows it and fetches the results. Measured by the client from submit to the end of
# `fedimpute job submit --watch` (upload, queue, QC, Beagle, results; for the forwarded job
# also the transfers and the result fetch). Alternating, 3 runs each; release build; committed
# test data. Prints a Markdown table.
#
#   scripts/bench/forwarding.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
FED_DIR=$(mktemp -d)
# shellcheck source=scripts/lib/federation.sh
source scripts/lib/federation.sh
trap 'fed_stop_all; rm -rf "$FED_DIR"' EXIT

fed_origin_and_host Bench bench sim
RUST_LOG=warn fed_start a
RUST_LOG=warn fed_start b
fed_wait_catalog a 1
PW=$(cat "$FED_DIR/admin-password")

run() { # node -> seconds
  local node=$1 token start
  token=$(fed_login "$node" admin "$PW")
  start=$(date +%s.%N)
  "$BIN" job submit --node "$(fed_api "$node")" --token "$token" --ca-cert "$FED_DIR/$node/tls/api.crt" \
    --panel sim --build hg19 --watch tests/data/targets.vcf.gz >/dev/null 2>&1
  echo "$start $(date +%s.%N)" | awk '{print $2 - $1}'
}

echo "| run | local at B s | forwarded from A s | ratio |"
echo "|---|---|---|---|"
for i in 1 2 3; do
  local_s=$(run b)
  forwarded_s=$(run a)
  awk -v r="$i" -v l="$local_s" -v f="$forwarded_s" 'BEGIN {printf "| %d | %.2f | %.2f | %.3f |\n", r, l, f, f / l}'
done
echo "machine: $(nproc) cores"
