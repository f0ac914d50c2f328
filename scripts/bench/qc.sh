#!/usr/bin/env bash
# Input QC throughput and memory (issue 4): `fedimpute qc` vs `bcftools view -Ou` on the same
# ~1 GB VCF (the committed 1,000-sample panel repeated 13 times along chromosome 20, bgzipped),
# alternating, 3 runs each. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   scripts/bench/qc.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
bgzip -dc tests/data/panel.vcf.gz | awk -v N=13 'BEGIN{FS=OFS="\t"}
  /^##contig/ {print "##contig=<ID=20,length=64444167>"; next} /^#/ {print; next} {rec[++n]=$0}
  END {for (k = 0; k < N; k++) for (i = 1; i <= n; i++) {split(rec[i], f, "\t"); f[2] = f[2] - 29000000 + k * 2000000;
       line = f[1]; for (j = 2; j <= length(f); j++) line = line OFS f[j]; print line}}' | bgzip -@2 -c > "$WORK/big.vcf.gz"
echo "input: $(bgzip -dc "$WORK/big.vcf.gz" | wc -c) bytes of VCF ($(stat -c %s "$WORK/big.vcf.gz") bgzipped), $(bgzip -dc "$WORK/big.vcf.gz" | grep -vc '^#') variants x 1000 samples"
measure() { /usr/bin/time -f "%e %U %S %M" "$@" 2>&1 >/dev/null | tail -1; }
echo "| tool | wall s | user+sys CPU s | peak RSS MiB |"
echo "|---|---|---|---|"
for run in 1 2 3; do
  read -r w u s m < <(measure bcftools view -Ou -o /dev/null "$WORK/big.vcf.gz")
  awk -v r="$run" -v w="$w" -v u="$u" -v s="$s" -v m="$m" 'BEGIN {printf "| bcftools view -Ou (run %d) | %.2f | %.2f | %.1f |\n", r, w, u + s, m / 1024}'
  read -r w u s m < <(measure "$BIN" qc --build hg19 --out "$WORK/out" "$WORK/big.vcf.gz")
  awk -v r="$run" -v w="$w" -v u="$u" -v s="$s" -v m="$m" 'BEGIN {printf "| fedimpute qc (run %d) | %.2f | %.2f | %.1f |\n", r, w, u + s, m / 1024}'
done
echo "machine: $(nproc) cores; $(bcftools --version | head -1)"
