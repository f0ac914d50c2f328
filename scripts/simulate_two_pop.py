#!/usr/bin/env python3
"""Simulate two populations, a reference panel from each, and array targets from both (msprime).

For meta-imputation: two institutions each hold a panel of one population; the researcher's
targets come from both. Writes, for one region of one chromosome (uncompressed; simulate.sh
bgzips and indexes them):
  panel_a.vcf      phased panel of population A (sites polymorphic in that panel only)
  panel_b.vcf      phased panel of population B (likewise: each panel has sites the other lacks)
  pooled.vcf       both panels as one, for reference only: the panel nobody may build
  targets.vcf      unphased "array" genotypes of the targets, half from A and half from B, at
                   about one site per ARRAY_SPACING bp that is common (MAF >= 5%) in the pooled
                   panel
  truth.vcf        the targets' true phased genotypes at every pooled-panel site (for scoring)
  populations.tsv  each target's population (sample, population)
  map.txt          PLINK genetic map (constant recombination rate) for the engines

Demography: an ancestral population of Ne 10,000 splits SPLIT generations ago (default 1,500)
into A and B of 10,000 each, which stay apart and grow to 500,000 over the last 400
generations. Deterministic for a seed. Run through scripts/simulate.sh --two-populations.
"""
import argparse
import math
import os

import msprime

from simulate import MUTATION_RATE, RECOMBINATION_RATE, header


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--chrom", default="20", help="chromosome name as written: 20 (hg19 style) or chr20 (hg38)")
    p.add_argument("--length-mb", type=float, default=2.0)
    p.add_argument("--start", type=int, default=30_000_000, help="first base of the region")
    p.add_argument("--panel", type=int, default=600, help="samples (diploid) in each population's panel")
    p.add_argument("--targets", type=int, default=60, help="target samples (diploid), half from each population")
    p.add_argument("--split", type=int, default=1500, help="generations since the populations split")
    p.add_argument("--array-spacing", type=int, default=5000, help="bp per kept array site")
    p.add_argument("--seed", type=int, default=20261202)
    return p.parse_args()


def demography(split):
    d = msprime.Demography()
    growth = math.log(500_000 / 10_000) / 400
    for name in ("A", "B"):
        d.add_population(name=name, initial_size=500_000, growth_rate=growth)
    d.add_population(name="ANC", initial_size=10_000)
    for name in ("A", "B"):
        d.add_population_parameters_change(time=400, growth_rate=0, population=name)
    d.add_population_split(time=split, derived=["A", "B"], ancestral="ANC")
    return d


def phased(haps, samples):
    return "\t".join(f"{haps[2 * i]}|{haps[2 * i + 1]}" for i in samples)


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    half = a.targets // 2
    # Per population: its panel first, then its targets.
    per_pop = {"A": a.panel + half, "B": a.panel + (a.targets - half)}
    ts = msprime.sim_ancestry(samples=per_pop, demography=demography(a.split), sequence_length=int(a.length_mb * 1e6),
                              recombination_rate=RECOMBINATION_RATE, random_seed=a.seed)
    ts = msprime.sim_mutations(ts, rate=MUTATION_RATE, model=msprime.JC69(), random_seed=a.seed + 1)

    # Diploid individuals in sample order: A's panel, A's targets, B's panel, B's targets.
    n_a = per_pop["A"]
    panel_a = list(range(a.panel))
    panel_b = [n_a + i for i in range(a.panel)]
    targets = [a.panel + i for i in range(half)] + [n_a + a.panel + i for i in range(a.targets - half)]
    target_ids = [f"TGT{i:03d}" for i in range(a.targets)]
    names = {
        "panel_a": [f"A{i:04d}" for i in range(a.panel)],
        "panel_b": [f"B{i:04d}" for i in range(a.panel)],
    }
    end = a.start + int(a.length_mb * 1e6)
    files = {name: open(os.path.join(a.out, f"{name}.vcf.tmp"), "w")
             for name in ("panel_a", "panel_b", "pooled", "targets", "truth")}
    files["panel_a"].write(header(a.chrom, end, names["panel_a"], "phased reference panel of population A"))
    files["panel_b"].write(header(a.chrom, end, names["panel_b"], "phased reference panel of population B"))
    files["pooled"].write(header(a.chrom, end, names["panel_a"] + names["panel_b"],
                                 "both panels pooled, for reference only"))
    files["truth"].write(header(a.chrom, end, target_ids, "phased truth of the targets"))
    files["targets"].write(header(a.chrom, end, target_ids, "unphased genotyping-array targets"))

    last_pos, last_array = 0, -a.array_spacing
    counts = {"panel_a": 0, "panel_b": 0, "pooled": 0, "array": 0}
    for var in ts.variants():
        alleles = var.alleles
        if len(alleles) != 2 or any(x is None or len(x) != 1 for x in alleles):
            continue  # biallelic SNPs only, as a real panel would keep
        pos = a.start + int(var.site.position) + 1
        if pos <= last_pos:
            continue
        last_pos = pos
        g = var.genotypes
        ref, alt = alleles
        site = f"{a.chrom}\t{pos}\t{a.chrom}:{pos}:{ref}:{alt}\t{ref}\t{alt}\t.\tPASS\t.\tGT"
        ac = {}
        for name, members in (("panel_a", panel_a), ("panel_b", panel_b)):
            ac[name] = sum(int(g[2 * i]) + int(g[2 * i + 1]) for i in members)
            if 0 < ac[name] < 2 * a.panel:
                files[name].write(site + "\t" + phased(g, members) + "\n")
                counts[name] += 1
        pooled_ac = ac["panel_a"] + ac["panel_b"]
        if pooled_ac == 0 or pooled_ac == 4 * a.panel:
            continue  # monomorphic in both panels: no panel can impute it
        files["pooled"].write(site + "\t" + phased(g, panel_a + panel_b) + "\n")
        files["truth"].write(site + "\t" + phased(g, targets) + "\n")
        counts["pooled"] += 1
        maf = min(pooled_ac, 4 * a.panel - pooled_ac) / (4 * a.panel)
        if maf >= 0.05 and pos - last_array >= a.array_spacing:
            last_array = pos
            gts = []
            for i in targets:
                x, y = sorted((int(g[2 * i]), int(g[2 * i + 1])))
                gts.append(f"{x}/{y}")
            files["targets"].write(site + "\t" + "\t".join(gts) + "\n")
            counts["array"] += 1
    for f in files.values():
        f.close()
    for name in files:
        os.replace(os.path.join(a.out, f"{name}.vcf.tmp"), os.path.join(a.out, f"{name}.vcf"))
    with open(os.path.join(a.out, "populations.tsv"), "w") as p:
        p.write("sample\tpopulation\n")
        for i, sample in enumerate(target_ids):
            p.write(f"{sample}\t{'A' if i < half else 'B'}\n")
    with open(os.path.join(a.out, "map.txt"), "w") as m:
        cm_per_bp = RECOMBINATION_RATE * 100
        for bp in (a.start, end):
            m.write(f"{a.chrom}\t.\t{bp * cm_per_bp:.6f}\t{bp}\n")
    print(f"{a.out}: panel A {counts['panel_a']} sites, panel B {counts['panel_b']}, pooled {counts['pooled']}, "
          f"{counts['array']} array sites, {a.panel} samples per panel, {a.targets} targets "
          f"({half} from A), region {a.chrom}:{a.start + 1}-{end}")


if __name__ == "__main__":
    main()
