#!/usr/bin/env python3
"""Score imputed dosages against the truth at masked sites.

For every site that is in the truth but not in the target (array) VCF, compares each target
sample's imputed dosage (FORMAT/DS) with its true alternate-allele count, and reports, per
minor-allele-frequency bin of the reference panel (<1%, 1-5%, >5%) and over all of them (all):
  - aggregate dosage r2: squared Pearson correlation of dosage and truth over all (site,
    sample) pairs of the bin, the figure imputation papers report;
  - concordance: fraction of best-guess genotypes (dosage rounded) equal to the truth;
  - how many masked sites were imputed, of how many in the truth.

Standard library only. Prints a table, or JSON with --json.
Usage: accuracy.py --imputed out.vcf.gz --truth truth.vcf.gz --targets targets.vcf.gz --panel panel.vcf.gz
"""
import argparse
import gzip
import json
import math
import sys

BINS = [("<1%", 0.0, 0.01), ("1-5%", 0.01, 0.05), (">5%", 0.05, 0.5000001)]


def records(path):
    with gzip.open(path, "rt") as f:
        samples = None
        for line in f:
            if line.startswith("##"):
                continue
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#"):
                samples = fields[9:]
                continue
            yield samples, fields


def key(fields):
    return (fields[0], int(fields[1]), fields[3], fields[4])


def allele_count(gt):
    return sum(int(a) for a in gt.replace("|", "/").split("/") if a not in (".", ""))


def panel_maf(path):
    maf = {}
    for _, f in records(path):
        alt = total = 0
        for g in f[9:]:
            for a in g.split(":")[0].replace("|", "/").split("/"):
                if a in ("0", "1"):
                    total += 1
                    alt += a == "1"
        if total:
            p = alt / total
            maf[key(f)] = min(p, 1 - p)
    return maf


def score(imputed, truth, targets, panel):
    typed = {key(f) for _, f in records(targets)}
    maf = panel_maf(panel)
    true = {}
    truth_samples = None
    for samples, f in records(truth):
        truth_samples = samples
        k = key(f)
        if k not in typed:
            true[k] = [allele_count(g.split(":")[0]) for g in f[9:]]
    acc = {name: {"n": 0, "sx": 0.0, "sy": 0.0, "sxx": 0.0, "syy": 0.0, "sxy": 0.0, "concordant": 0,
                  "sites": 0, "truth_sites": 0} for name, _, _ in BINS}
    bin_of = lambda m: next(name for name, lo, hi in BINS if lo <= m < hi)
    for k in true:
        if k in maf:
            acc[bin_of(maf[k])]["truth_sites"] += 1
    for samples, f in records(imputed):
        k = key(f)
        if k not in true or k not in maf:
            continue
        fmt = f[8].split(":")
        if "DS" not in fmt:
            sys.exit(f"{imputed}: no DS field at {k}")
        ds_i = fmt.index("DS")
        order = [samples.index(s) for s in truth_samples]
        b = acc[bin_of(maf[k])]
        b["sites"] += 1
        for truth_value, j in zip(true[k], order):
            x = float(f[9 + j].split(":")[ds_i])
            y = float(truth_value)
            b["n"] += 1
            b["sx"] += x
            b["sy"] += y
            b["sxx"] += x * x
            b["syy"] += y * y
            b["sxy"] += x * y
            b["concordant"] += round(x) == truth_value
    # Every masked site the panel has, whatever its frequency.
    acc["all"] = {k: sum(acc[name][k] for name, _, _ in BINS) for k in acc[BINS[0][0]]}
    out = {}
    for name in [name for name, _, _ in BINS] + ["all"]:
        b = acc[name]
        n = b["n"]
        r2 = None
        if n:
            cov = b["sxy"] - b["sx"] * b["sy"] / n
            vx = b["sxx"] - b["sx"] ** 2 / n
            vy = b["syy"] - b["sy"] ** 2 / n
            r2 = (cov * cov / (vx * vy)) if vx > 0 and vy > 0 else None
        out[name] = {"r2": r2, "concordance": b["concordant"] / n if n else None,
                     "sites": b["sites"], "truth_sites": b["truth_sites"]}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("imputed", "truth", "targets", "panel"):
        p.add_argument(f"--{a}", required=True)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    result = score(a.imputed, a.truth, a.targets, a.panel)
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'MAF bin':<8} {'dosage r2':>10} {'concordance':>12} {'masked sites imputed':>22}")
    for name, r in result.items():
        r2 = "-" if r["r2"] is None else f"{r['r2']:.4f}"
        conc = "-" if r["concordance"] is None else f"{r['concordance']:.4f}"
        print(f"{name:<8} {r2:>10} {conc:>12} {r['sites']:>12} of {r['truth_sites']:<8}")


if __name__ == "__main__":
    main()
