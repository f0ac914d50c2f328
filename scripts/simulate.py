#!/usr/bin/env python3
"""Simulate a reference panel, genotyping-array targets and their truth with msprime.

Writes, for one region of one chromosome (uncompressed; simulate.sh bgzips and indexes them):
  panel.vcf        phased reference panel (biallelic SNPs), N_PANEL diploid samples
  targets.vcf      unphased "array" genotypes of N_TARGETS other samples, keeping about one
                   common (MAF >= 5%) site per ARRAY_SPACING bp
  truth.vcf        the targets' full phased genotypes at every panel site (for scoring)
  map.txt          PLINK genetic map (constant recombination rate) for the engines

The demography grows from Ne = 10,000 to 1,000,000 over the last 400 generations: with a
constant Ne, imputation is unrealistically easy (few rare variants, long shared haplotypes).
Run through scripts/simulate.sh, which makes the Python environment. Deterministic for a seed.
"""
import argparse
import math
import os
import random

import msprime


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--chrom", default="20", help="chromosome name as written: 20 (hg19 style) or chr20 (hg38)")
    p.add_argument("--length-mb", type=float, default=5.0)
    p.add_argument("--start", type=int, default=30_000_000, help="first base of the region")
    p.add_argument("--panel", type=int, default=1000, help="panel samples (diploid)")
    p.add_argument("--targets", type=int, default=100, help="target samples (diploid)")
    p.add_argument("--array-spacing", type=int, default=5000, help="bp per kept array site")
    p.add_argument("--seed", type=int, default=20261129)
    return p.parse_args()


RECOMBINATION_RATE = 1e-8  # per bp per generation: 1 cM/Mb
MUTATION_RATE = 1.25e-8


def demography():
    d = msprime.Demography()
    growth = math.log(1_000_000 / 10_000) / 400
    d.add_population(name="pop", initial_size=1_000_000, growth_rate=growth)
    d.add_population_parameters_change(time=400, growth_rate=0, population="pop")
    return d


def header(chrom, length_end, samples, phased_note):
    lines = [
        "##fileformat=VCFv4.2",
        f"##source=fedimpute scripts/simulate.py (msprime {msprime.__version__}); {phased_note}",
        f"##contig=<ID={chrom},length={length_end}>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples),
    ]
    return "\n".join(lines) + "\n"


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    length = int(a.length_mb * 1_000_000)
    n = a.panel + a.targets
    ts = msprime.sim_ancestry(samples=n, demography=demography(), sequence_length=length,
                              recombination_rate=RECOMBINATION_RATE, random_seed=a.seed)
    ts = msprime.sim_mutations(ts, rate=MUTATION_RATE, model=msprime.JC69(), random_seed=a.seed + 1)

    panel_ids = [f"REF{i:04d}" for i in range(a.panel)]
    target_ids = [f"TGT{i:03d}" for i in range(a.targets)]
    end = a.start + length
    # Diploid individual i has haplotypes 2i and 2i+1; the first a.panel form the panel.
    panel = open(os.path.join(a.out, "panel.vcf.tmp"), "w")
    truth = open(os.path.join(a.out, "truth.vcf.tmp"), "w")
    targets = open(os.path.join(a.out, "targets.vcf.tmp"), "w")
    panel.write(header(a.chrom, end, panel_ids, "phased reference panel"))
    truth.write(header(a.chrom, end, target_ids, "phased truth of the targets"))
    targets.write(header(a.chrom, end, target_ids, "unphased genotyping-array targets"))

    last_pos, last_array = 0, -a.array_spacing
    counts = {"panel": 0, "array": 0}
    for var in ts.variants():
        alleles = var.alleles
        if len(alleles) != 2 or any(x is None or len(x) != 1 for x in alleles):
            continue  # keep biallelic SNPs only, as a real panel would
        pos = a.start + int(var.site.position) + 1
        if pos <= last_pos:
            continue
        last_pos = pos
        g = var.genotypes
        ref, alt = alleles
        hap_panel = g[: 2 * a.panel]
        ac = int(hap_panel.sum())
        if ac == 0 or ac == len(hap_panel):
            continue  # monomorphic in the panel
        site = f"{a.chrom}\t{pos}\t{a.chrom}:{pos}:{ref}:{alt}\t{ref}\t{alt}\t.\tPASS\t.\tGT"
        panel.write(site + "\t" + "\t".join(f"{hap_panel[2*i]}|{hap_panel[2*i+1]}" for i in range(a.panel)) + "\n")
        hap_t = g[2 * a.panel:]
        truth.write(site + "\t" + "\t".join(f"{hap_t[2*i]}|{hap_t[2*i+1]}" for i in range(a.targets)) + "\n")
        counts["panel"] += 1
        maf = min(ac, len(hap_panel) - ac) / len(hap_panel)
        if maf >= 0.05 and pos - last_array >= a.array_spacing:
            last_array = pos
            # Arrays report unphased genotypes.
            gts = []
            for i in range(a.targets):
                x, y = sorted((hap_t[2 * i], hap_t[2 * i + 1]))
                gts.append(f"{x}/{y}")
            targets.write(site + "\t" + "\t".join(gts) + "\n")
            counts["array"] += 1
    for f in (panel, truth, targets):
        f.close()
    for name in ("panel", "truth", "targets"):
        os.replace(os.path.join(a.out, f"{name}.vcf.tmp"), os.path.join(a.out, f"{name}.vcf"))
    with open(os.path.join(a.out, "map.txt"), "w") as m:
        # PLINK map: chrom, id, cM, bp; two points define the constant rate.
        cm_per_bp = RECOMBINATION_RATE * 100
        for bp in (a.start, end):
            m.write(f"{a.chrom}\t.\t{bp * cm_per_bp:.6f}\t{bp}\n")
    print(f"{a.out}: {counts['panel']} panel sites, {counts['array']} array sites, "
          f"{a.panel} panel samples, {a.targets} targets, region {a.chrom}:{a.start + 1}-{end}")


if __name__ == "__main__":
    main()
