#!/usr/bin/env bash
# Meta-imputation on two simulated populations (issue 13): the accuracy of each panel alone, of
# best_r2, of meta-imputation with one panel's phasing and with each sample's best panel's
# phasing, and of the pooled panel nobody may build (made inside the simulator, for reference
# only); then the combination's wall time and peak RSS against one panel's Minimac4 run on the
# same input, and its RSS on half the sites.
#
# The engines run as a host runs them (Beagle 5.4 phasing with the panel, then Minimac4 4.1.2
# with --empirical-output); the combination is `fedimpute combine` (the code a combine=meta job
# runs at its origin). Release build. Prints Markdown tables.
#
#   scripts/bench/meta.sh [DATA_DIR]     # DATA_DIR: output of simulate.sh --two-populations
#                                        # (simulated with the defaults if not given)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
# shellcheck source=scripts/bench/release.sh
source scripts/bench/release.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DATA=${1:-}
if [ -z "$DATA" ]; then
  DATA="$WORK/data"
  scripts/simulate.sh --two-populations --out "$DATA" >&2
fi
THREADS=2
cd "$WORK"

# Peak RSS (KB) and wall seconds of a command, into the named variables.
measure() {
  local rss_var=$1 wall_var=$2
  shift 2
  /usr/bin/time -f '%M %e' -o "$WORK/time.txt" "$@" >/dev/null 2>>"$WORK/engines.log"
  read -r "${rss_var?}" "${wall_var?}" < "$WORK/time.txt"
}

score() {
  python3 "$ROOT/scripts/accuracy.py" --json --imputed "$1" --truth "$DATA/truth.vcf.gz" \
    --targets "$DATA/targets.vcf.gz" --panel "$DATA/pooled.vcf.gz"
}

row() {
  local label=$1 file=$2
  score "$file" | python3 -c '
import json, sys
r = json.load(sys.stdin)
f = lambda b: "-" if r[b]["r2"] is None else "%.3f" % r[b]["r2"]
print("| %s | %s | %s | %s | %s | %d of %d |" % (sys.argv[1], f("<1%"), f("1-5%"), f(">5%"), f("all"),
      r["all"]["sites"], r["all"]["truth_sites"]))' "$label"
}

echo "== phasing and imputing with each panel (as its host does)" >&2
for p in panel_a panel_b pooled; do
  minimac4 --compress-reference "$DATA/$p.vcf.gz" -o "$p.msav" 2>>engines.log
  beagle gt="$DATA/targets.vcf.gz" ref="$DATA/$p.vcf.gz" map="$DATA/map.txt" out="phased.$p" \
    impute=false seed=1 nthreads=$THREADS >>engines.log
  tabix -f -p vcf "phased.$p.vcf.gz"
  measure "rss_$p" "wall_$p" minimac4 "$p.msav" "phased.$p.vcf.gz" -o "own.$p.dose.vcf.gz" -O vcf.gz \
    -f GT,HDS,DS,GP -e "own.$p.empirical.vcf.gz" -t $THREADS
done

echo "== best_r2 and meta-imputation" >&2
"$BIN" combine best-r2 --panel A=own.panel_a.dose.vcf.gz --panel B=own.panel_b.dose.vcf.gz -o best_r2.vcf.gz >/dev/null
# Meta with every sample phased by panel A.
for p in panel_a panel_b; do
  minimac4 "$p.msav" phased.panel_a.vcf.gz -o "a_phased.$p.dose.vcf.gz" -O vcf.gz -f GT,HDS,DS,GP \
    -e "a_phased.$p.empirical.vcf.gz" -t $THREADS 2>>engines.log >/dev/null
done
"$BIN" combine meta --panel A=a_phased.panel_a.dose.vcf.gz,a_phased.panel_a.empirical.vcf.gz \
  --panel B=a_phased.panel_b.dose.vcf.gz,a_phased.panel_b.empirical.vcf.gz -o meta_a_phased.vcf.gz >/dev/null 2>&1
# Meta with each sample phased by its best-fitting panel.
"$BIN" combine phasing --panel A=phased.panel_a.vcf.gz,own.panel_a.empirical.vcf.gz \
  --panel B=phased.panel_b.vcf.gz,own.panel_b.empirical.vcf.gz -o composed.vcf.gz > choice.tsv 2>>engines.log
right=$(python3 - "$DATA/populations.tsv" choice.tsv <<'EOF'
import sys
truth = dict(l.split("\t") for l in open(sys.argv[1]).read().split("\n")[1:] if l)
choice = dict(l.split("\t") for l in open(sys.argv[2]).read().split("\n") if l)
print(sum(1 for s, p in choice.items() if truth[s] == p), "of", len(choice))
EOF
)
for p in panel_a panel_b; do
  minimac4 "$p.msav" composed.vcf.gz -o "meta_in.$p.dose.vcf.gz" -O vcf.gz -f GT,HDS,DS,GP \
    -e "meta_in.$p.empirical.vcf.gz" -t $THREADS 2>>engines.log >/dev/null
done
META_ARGS=(--panel A=meta_in.panel_a.dose.vcf.gz,meta_in.panel_a.empirical.vcf.gz
  --panel B=meta_in.panel_b.dose.vcf.gz,meta_in.panel_b.empirical.vcf.gz)
for rule in pass_through ref infer; do
  "$BIN" combine meta "${META_ARGS[@]}" --absent "$rule" -o "meta.$rule.vcf.gz" --report "meta.$rule.json" >/dev/null 2>&1
done
weights_right=$(python3 - "$DATA/populations.tsv" meta.infer.json <<'EOF'
import json, sys
truth = dict(l.split("\t") for l in open(sys.argv[1]).read().split("\n")[1:] if l)
r = json.load(open(sys.argv[2]))
best = {s["sample"]: r["panels"][max(range(len(r["panels"])), key=lambda k: s["mean_weights"][k])] for s in r["samples"]}
print(sum(1 for s, p in best.items() if truth[s] == p), "of", len(best))
EOF
)
measure rss_meta wall_meta "$BIN" combine meta "${META_ARGS[@]}" -o timed.vcf.gz
# The same combination on the first half of the region: RSS must not follow the sites.
half=$(zcat "$DATA/truth.vcf.gz" | grep -v '^#' | awk 'NR == 1 {a = $2} {b = $2} END {printf "%s:%d-%d", $1, a, a + int((b - a) / 2)}')
HALF_ARGS=()
for p in panel_a panel_b; do
  for kind in dose empirical; do
    tabix -f -p vcf "meta_in.$p.$kind.vcf.gz"
    bcftools view -r "$half" "meta_in.$p.$kind.vcf.gz" -Oz -o "half.$p.$kind.vcf.gz"
  done
  HALF_ARGS+=(--panel "${p#panel_}=half.$p.dose.vcf.gz,half.$p.empirical.vcf.gz")
done
measure rss_half wall_half "$BIN" combine meta "${HALF_ARGS[@]}" -o half.vcf.gz

samples=$(bcftools query -l "$DATA/targets.vcf.gz" | wc -l)
echo "data: $(zcat "$DATA/truth.vcf.gz" | grep -vc '^#') pooled-panel sites, $samples targets, two panels of" \
  "$(bcftools query -l "$DATA/panel_a.vcf.gz" | wc -l) samples"
echo
echo "| result | <1% | 1-5% | >5% | all | masked sites imputed |"
echo "|---|---|---|---|---|---|"
row "panel A alone (its own phasing)" own.panel_a.dose.vcf.gz
row "panel B alone (its own phasing)" own.panel_b.dose.vcf.gz
row "best_r2 of A and B" best_r2.vcf.gz
row "meta, every sample phased with A" meta_a_phased.vcf.gz
row "meta, absent sites pass through (MetaMinimac2)" meta.pass_through.vcf.gz
row "meta, absent panel as REF" meta.ref.vcf.gz
row "meta, absent panel inferred (default)" meta.infer.vcf.gz
row "pooled panel (reference only)" own.pooled.dose.vcf.gz
echo
echo "Each sample's best-fitting panel (phasing choice) is its own population's for $right samples;"
echo "its highest mean meta weight is its own population's panel for $weights_right."
echo
echo "| step | wall s | peak RSS MB |"
echo "|---|---|---|"
echo "| Minimac4, panel A, own phasing ($THREADS threads) | $wall_panel_a | $((rss_panel_a / 1024)) |"
echo "| combine meta, both panels, whole region | $wall_meta | $((rss_meta / 1024)) |"
echo "| combine meta, both panels, first half of the region | $wall_half | $((rss_half / 1024)) |"
awk -v m="$wall_meta" -v e="$wall_panel_a" 'BEGIN {printf "\ncombination / one Minimac4 run: %.2f\n", m / e}'
