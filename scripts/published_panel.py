#!/usr/bin/env python3
"""Turn the simulated test panel into one shaped like a published panel, with its truth.

Published panels (1000 Genomes, HGDP) hold indels, multi-allelic records, structural variants
with symbolic alleles, and the odd malformed line. msprime simulates SNPs only, so this script
reshapes some of the simulated SNPs, keeping their haplotypes (so they stay in LD with the
rest and can be imputed):

  - every 25th masked SNP (one the targets do not type) becomes an insertion (REF A -> ALT AT);
  - every 40th masked SNP absorbs the next masked SNP as a second ALT allele: a multi-allelic
    record whose haplotypes carry allele 2 where the absorbed SNP's ALT was (allele 1 wins
    where both were);
  - added records the registration must leave out, one of each: a symbolic <DEL>, an ALT `*`,
    a malformed REF, an unphased genotype, and a repeat of the record before.

The truth file gets the same indels and the split (biallelic) form of each multi-allelic record,
so scripts/accuracy.py scores them. The panel is written gzip-compressed but not bgzipped, as
files often arrive. Standard library only; deterministic.

Usage: published_panel.py --data tests/data --out DIR
writes DIR/panel.vcf.gz, DIR/truth.vcf.gz and DIR/expected.json (what registration must report).
"""
import argparse
import gzip
import json
import os

INDEL_EVERY = 25
MULTI_EVERY = 40
OTHER_BASE = {"A": "C", "C": "G", "G": "T", "T": "A"}


def read(path):
    header, records = [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith("#"):
                header.append(line)
            else:
                records.append(line.rstrip("\n").split("\t"))
    return header, records


def third_allele(ref, alt):
    base = OTHER_BASE[alt]
    while base in (ref, alt):
        base = OTHER_BASE[base]
    return base


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    panel_header, panel = read(os.path.join(a.data, "panel.vcf.gz"))
    truth_header, truth = read(os.path.join(a.data, "truth.vcf.gz"))
    _, targets = read(os.path.join(a.data, "targets.vcf.gz"))
    typed = {int(r[1]) for r in targets}
    truth_at = {int(r[1]): r for r in truth}

    out_panel, out_truth = [], []
    expected = {"indels": 0, "multiallelic_split": 0, "excluded": {}}
    masked_index = 0
    i = 0
    while i < len(panel):
        rec = panel[i]
        pos = int(rec[1])
        t = truth_at.get(pos)
        if pos in typed or t is None:
            out_panel.append(rec)
            if t is not None:
                out_truth.append(t)
            i += 1
            continue
        masked_index += 1
        nxt = panel[i + 1] if i + 1 < len(panel) else None
        if masked_index % MULTI_EVERY == 0 and nxt and int(nxt[1]) not in typed and int(nxt[1]) in truth_at:
            ref, alt = rec[3], rec[4]
            alt2 = third_allele(ref, alt)

            def merge(r1, r2):
                gts = []
                for g1, g2 in zip(r1[9:], r2[9:]):
                    h1, h2 = g1.split("|"), g2.split("|")
                    gts.append("|".join("1" if x == "1" else ("2" if y == "1" else "0") for x, y in zip(h1, h2)))
                return gts

            merged = rec[:4] + [f"{alt},{alt2}"] + rec[5:9] + merge(rec, nxt)
            out_panel.append(merged)
            tm = merge(t, truth_at[int(nxt[1])])
            for k, allele in ((1, alt), (2, alt2)):
                out_truth.append(t[:4] + [allele] + t[5:9] + [
                    "|".join("1" if h == str(k) else "0" for h in g.split("|")) for g in tm])
            expected["multiallelic_split"] += 1
            i += 2
            continue
        if masked_index % INDEL_EVERY == 0:
            rec = rec[:4] + [rec[3] + "T"] + rec[5:]
            out_panel.append(rec)
            out_truth.append(t[:4] + [t[3] + "T"] + t[5:])
            expected["indels"] += 1
            i += 1
            continue
        out_panel.append(rec)
        out_truth.append(t)
        i += 1

    # Records registration must leave out, placed after the 100th record (positions stay sorted).
    anchor = out_panel[100]
    pos = int(anchor[1])
    n = len(anchor) - 9
    phased = ["0|0"] * n
    bad = [
        ("symbolic", anchor[:3] + ["A", "<DEL>"] + anchor[5:9] + phased),
        ("symbolic", anchor[:3] + ["A", "G,*"] + anchor[5:9] + phased),
        ("malformed", anchor[:3] + ["X", "G"] + anchor[5:9] + phased),
        ("unphased_or_missing", anchor[:3] + ["A", "C"] + anchor[5:9] + ["0/1"] + phased[1:]),
        ("duplicate", list(anchor)),
    ]
    for reason, rec in bad:
        rec[1] = str(pos)
        expected["excluded"][reason] = expected["excluded"].get(reason, 0) + 1
    out_panel[101:101] = [rec for _, rec in bad]
    expected["records_read"] = len(out_panel)

    os.makedirs(a.out, exist_ok=True)
    for name, header, records in (("panel", panel_header, out_panel), ("truth", truth_header, out_truth)):
        with gzip.open(os.path.join(a.out, f"{name}.vcf.gz"), "wt") as f:
            f.writelines(header)
            for r in records:
                f.write("\t".join(r) + "\n")
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)


if __name__ == "__main__":
    main()
