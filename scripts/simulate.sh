#!/usr/bin/env bash
# Simulates a reference panel, array targets and their truth (scripts/simulate.py, msprime from
# PyPI in a Python environment of its own under .venv-sim/), then bgzips and indexes the VCFs.
# Arguments go to simulate.py (see `scripts/simulate.sh --help`); with --two-populations first,
# to simulate_two_pop.py instead (two populations, a panel of each and targets from both: see
# `scripts/simulate.sh --two-populations --help`).
#
# The committed test data (tests/data/) was made with:
#   scripts/simulate.sh --out tests/data --chrom 20 --length-mb 2 --panel 1000 --targets 100
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-sim
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "msprime==1.4.4"
fi
SCRIPT=scripts/simulate.py
if [ "${1:-}" = "--two-populations" ]; then SCRIPT=scripts/simulate_two_pop.py; shift; fi
"$VENV/bin/python" "$SCRIPT" "$@"
case " $* " in *" --help "*|*" -h "*) exit 0 ;; esac
OUT=""
while [ "$#" -gt 0 ]; do [ "$1" = "--out" ] && OUT=$2; shift; done
for vcf in "$OUT"/*.vcf; do
  bgzip -f "$vcf"
  tabix -f -p vcf "$vcf.gz"
done
