#!/usr/bin/env bash
# Panel registration memory and time (issue 12): `fedimpute panel add` on a generated panel of
# SAMPLES x SITES (phased; 3% indels, 1% multi-allelic records), sampling the peak resident
# memory of the node process itself and of each tool it runs (bcftools, Beagle's bref3 in Java,
# Minimac4) every 0.2 s. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   scripts/bench/panel_registration.sh [SAMPLES] [SITES]     # default 20000 1000000
set -euo pipefail
cd "$(dirname "$0")/../.."
SAMPLES=${1:-20000}
SITES=${2:-1000000}
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Genotype rows come from a pool of random rows with a realistic frequency spectrum (most
# sites rare), so the file compresses as real panels do.
python3 - "$SAMPLES" "$SITES" <<'EOF' | bgzip -@2 -c > "$WORK/panel.vcf.gz"
import random, sys
samples, sites = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(20261202)
out = sys.stdout
out.write("##fileformat=VCFv4.2\n##contig=<ID=20,length=64444167>\n")
out.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(samples)) + "\n")
def row(p, alleles=2):
    gts = []
    for _ in range(samples):
        a = [("1" if rng.random() < p else "0") for _ in range(2)]
        if alleles > 2 and rng.random() < p:
            a[0] = "2"
        gts.append("|".join(a))
    return "\t".join(gts)
pool = [row(min(0.5, rng.paretovariate(1.2) * 0.002)) for _ in range(61)]
multi = [row(0.05, 3) for _ in range(7)]
step = max(1, 60_000_000 // sites)
for i in range(sites):
    pos = 1_000_000 + i * step
    kind = i % 100
    if kind < 3:
        out.write(f"20\t{pos}\t.\tA\tAT\t.\tPASS\t.\tGT\t{pool[i % 61]}\n")
    elif kind == 3:
        out.write(f"20\t{pos}\t.\tA\tC,G\t.\tPASS\t.\tGT\t{multi[i % 7]}\n")
    else:
        out.write(f"20\t{pos}\t.\tA\tG\t.\tPASS\t.\tGT\t{pool[i % 61]}\n")
EOF
echo "panel: $SAMPLES samples x $SITES records, $(stat -c %s "$WORK/panel.vcf.gz") bytes bgzipped"

printf 'bench passphrase 123\n' > "$WORK/pw"
"$BIN" init --data-dir "$WORK/node" --institution Bench --api-listen 127.0.0.1:0 --p2p-listen /ip4/127.0.0.1/tcp/0 \
  --admin-password-file "$WORK/pw" >/dev/null
START=$(date +%s.%N)
"$BIN" panel add --config "$WORK/node/node.toml" --id big --name Big --build hg19 \
  --vcf "$WORK/panel.vcf.gz" >"$WORK/add.out" 2>"$WORK/add.err" &
PID=$!
declare -A PEAK
while kill -0 "$PID" 2>/dev/null; do
  # The node process and its descendants, by program name: VmRSS now (VmHWM of the node).
  node_hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
  [ -n "$node_hwm" ] && [ "$node_hwm" -gt "${PEAK[fedimpute]:-0}" ] && PEAK[fedimpute]=$node_hwm
  for child in $(pgrep -P "$PID" || true); do
    name=$(cat "/proc/$child/comm" 2>/dev/null || true)
    rss=$(awk '/^VmHWM/ {print $2}' "/proc/$child/status" 2>/dev/null || true)
    [ -n "$name" ] && [ -n "$rss" ] && [ "$rss" -gt "${PEAK[$name]:-0}" ] && PEAK[$name]=$rss
  done
  sleep 0.2
done
wait "$PID" || { cat "$WORK/add.err"; exit 1; }
END=$(date +%s.%N)
grep -E "sites registered" "$WORK/add.err" | sed 's/^ */  /'
echo "| process | peak RSS MiB |"
echo "|---|---|"
for name in "${!PEAK[@]}"; do
  awk -v n="$name" -v k="${PEAK[$name]}" 'BEGIN {printf "| %s | %.1f |\n", n, k / 1024}'
done | sort
awk -v s="$START" -v e="$END" 'BEGIN {printf "registration took %.0f s\n", e - s}'
echo "machine: $(nproc) cores; $(bcftools --version | head -1)"
