"""Derive the bundled mock-9 demo files from ../shared/data/mock9 (run once).

Writes q2_barcodemamba/data/mock9-sequences.fasta (one GenBank record per
member species, the type-material ``NR_`` record where there is one,
trimmed to the ITS1..ITS4 primer sites so SSU/LSU flanks do not dominate)
and mock9-expected.tsv (species, expected relative abundance: 1/16 per
strain; the four Dipodascus geotrichum strains share one record).
"""
import os
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mock9"
OUT = os.path.join(os.path.dirname(__file__), "..", "q2_barcodemamba", "data")
ITS1 = "TCCGTAGGTGAACCTGCGG"          # ITS1 primer site (White et al. 1990)
SSU_END = "GGAAGTAAAAGTCGTAACAAGG"   # ITS1F..ITS5 region, 24 bp upstream
ITS4_RC = "GCATATCAATAAGCGGAGGA"     # reverse complement of ITS4
ALIASES = {"Galactomyces geotrichum": "Dipodascus geotrichum",
           "Diutina catenulata": "Candida catenulata"}


def read(path):
    recs = []
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            recs.append([line[1:], ""])
        elif line:
            recs[-1][1] += line.upper()
    return recs


def trim(s):
    a = s.find(ITS1)
    if a < 0:
        b = s.find(SSU_END)
        a = b + len(SSU_END) - 3 if b >= 0 else 0
    e = s.find(ITS4_RC, a)
    end = e + len(ITS4_RC) if e >= 0 else min(len(s), a + 1000)
    return s[a:end]


def main():
    chosen = {}
    for header, seq in read(os.path.join(SRC, "source_expected-sequences.fasta")):
        acc, words = header.split()[0], header.split()[1:]
        species = " ".join(words[:2])
        species = ALIASES.get(species, species)
        if species not in chosen or acc.startswith("NR_"):
            chosen[species] = (acc, trim(seq))
    abundance = {}
    for line in open(os.path.join(SRC, "source_taxonomy.tsv")).readlines()[1:]:
        name, frac = line.split("\t")[:2]
        name = name.split(";")[-1].replace("_Type_1", "").replace(
            "_Type_2", "").replace("_Type_3", "").replace("_Type_4", "")
        sp = name.replace("_", " ")
        abundance[sp] = abundance.get(sp, 0.0) + float(frac)
    assert set(abundance) == set(chosen), (set(abundance) ^ set(chosen))
    with open(os.path.join(OUT, "mock9-sequences.fasta"), "w") as fh:
        for sp in sorted(chosen):
            acc, seq = chosen[sp]
            fh.write(f">{acc}\n{seq}\n")
    with open(os.path.join(OUT, "mock9-expected.tsv"), "w") as fh:
        fh.write("feature-id\tspecies\trelative-abundance\n")
        for sp in sorted(chosen):
            fh.write(f"{chosen[sp][0]}\t{sp.replace(' ', '_')}\t"
                     f"{abundance[sp]:.4f}\n")


if __name__ == "__main__":
    main()
