#!/usr/bin/env python3
"""Make chrX test data with males and females from the committed (simulated) chromosome 20.

The committed region 20:30-32 Mb becomes X:30-32 Mb (hg19 names), which lies outside both
pseudo-autosomal regions, so males carry one X there. In the panel and the targets the first
half of the samples are female (diploid, as simulated) and the second half male: haploid, their
first haplotype. The targets are unphased for females, as arrays report them. A third file,
`targets_mixed.vcf.gz`, codes the first male diploid at 40% of his sites, which the chrX check
must refuse. Standard library only; writes plain gzip.

Usage: chrx_data.py --data tests/data --out DIR
"""
import argparse
import gzip
import os


def convert(src, dst, unphase, mixed_sample=None):
    with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as out:
        samples = []
        site = 0
        for line in f:
            if line.startswith("##contig"):
                out.write("##contig=<ID=X,length=155270560>\n")
                continue
            if line.startswith("#"):
                if line.startswith("#CHROM"):
                    samples = line.rstrip("\n").split("\t")[9:]
                out.write(line)
                continue
            c = line.rstrip("\n").split("\t")
            c[0] = "X"
            site += 1
            half = len(samples) // 2
            for i in range(9, len(c)):
                fields = c[i].split(":")
                alleles = fields[0].replace("/", "|").split("|")
                if i - 9 >= half:
                    if i - 9 == mixed_sample and site % 5 < 2:
                        fields[0] = "/".join(alleles)
                    else:
                        fields[0] = alleles[0]
                elif unphase:
                    fields[0] = "/".join(sorted(alleles))
                c[i] = ":".join(fields)
            out.write("\t".join(c) + "\n")
    return samples[len(samples) // 2:]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    convert(os.path.join(a.data, "panel.vcf.gz"), os.path.join(a.out, "panel.vcf.gz"), False)
    males = convert(os.path.join(a.data, "targets.vcf.gz"), os.path.join(a.out, "targets.vcf.gz"), True)
    convert(os.path.join(a.data, "targets.vcf.gz"), os.path.join(a.out, "targets_mixed.vcf.gz"), True,
            mixed_sample=len(males))
    with open(os.path.join(a.out, "males.txt"), "w") as f:
        f.write("\n".join(males) + "\n")


if __name__ == "__main__":
    main()
