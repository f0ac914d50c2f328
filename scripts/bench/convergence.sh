#!/usr/bin/env bash
# Federation convergence benchmark (issue 3): N = 10, 25 and 50 release-build nodes on
# 127.0.0.1. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   scripts/bench/convergence.sh [N ...]      # default: 10 25 50
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
if [ "$#" -eq 0 ]; then set -- 10 25 50; fi
exec python3 scripts/bench/convergence.py "$BIN" "$@"
