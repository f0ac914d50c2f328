#!/usr/bin/env bash
# Simulates a reference panel, array targets and their truth (scripts/simulate.py, msprime from
# PyPI in a Python environment of its own under .venv-sim/), then bgzips and indexes the VCFs.
# Arguments go to simulate.py (see `scripts/simulate.sh --help`).
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
"$VENV/bin/python" scripts/simulate.py "$@"
case " $* " in *" --help "*|*" -h "*) exit 0 ;; esac
OUT=""
while [ "$#" -gt 0 ]; do [ "$1" = "--out" ] && OUT=$2; shift; done
for name in panel targets truth; do
  bgzip -f "$OUT/$name.vcf"
  tabix -f -p vcf "$OUT/$name.vcf.gz"
done
