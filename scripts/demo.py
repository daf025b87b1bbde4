"""The README's demo: fit a BarcodeMamba+ classifier on bundled real yeast
ITS barcodes with the QIIME 2 CLI, classify held-out reads and the mock-9
community, and write a metadata table view and a taxa barplot.

Run through ``make demo`` (which installs everything first). Outputs land
in ``--output-dir`` (default demo-output/).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "q2_barcodemamba", "data")
sys.path.insert(0, os.path.join(HERE, ".."))

from q2_barcodemamba.core.data import (clean_sequence, read_fasta,  # noqa
                                       read_taxonomy)
from q2_barcodemamba.core.primers import amplicon, parse_region  # noqa
from q2_barcodemamba.core.split import grouped_split  # noqa
from q2_barcodemamba.core.taxonomy import RANKS, parse_taxonomy  # noqa


def run(qiime, *args, cwd):
    """Run one qiime command; return wall seconds (peak RSS printed when
    GNU time is available)."""
    print("$ qiime " + " ".join(args), flush=True)
    t = time.time()
    timer = "/usr/bin/time"
    if os.path.exists(timer):
        rss = os.path.join(cwd, ".peak-rss")
        subprocess.run([timer, "-f", "%M", "-o", rss, qiime, *args], cwd=cwd,
                       check=True)
        with open(rss) as fh:
            kb = int(fh.read().split()[-1])
        os.remove(rss)
        print(f"  ({time.time() - t:.0f} s, peak RSS {kb / 1024:.0f} MiB)",
              flush=True)
    else:
        subprocess.run([qiime, *args], cwd=cwd, check=True)
    return time.time() - t


def prepare_inputs(out, seed):
    """Split the bundled yeast set into reference and held-out query reads
    (whole haplotype clusters and whole species held out, no leakage)."""
    recs = list(read_fasta(os.path.join(DATA, "its_full_cbs_yeasts.fasta.gz")))
    tax = read_taxonomy(os.path.join(DATA,
                                     "its_full_cbs_yeasts.taxonomy.tsv.gz"))
    ids = [r[0] for r in recs]
    seqs = [clean_sequence(s, i) for i, s in recs]
    lineages = parse_taxonomy(ids, [tax[i] for i in ids])
    ref, query = grouped_split(seqs, lineages, 0.1, seed=seed)
    for name, idx in (("reference", ref), ("query", query)):
        with open(os.path.join(out, f"{name}.fasta"), "w") as fh:
            fh.writelines(f">{ids[i]}\n{seqs[i]}\n" for i in idx)
        with open(os.path.join(out, f"{name}-taxonomy.tsv"), "w") as fh:
            fh.write("Feature ID\tTaxon\n")
            fh.writelines(f"{ids[i]}\t{tax[ids[i]]}\n" for i in idx)
    # the ITS1 and ITS2 amplicons that common primer pairs cut from the
    # query reads (reads without the 5.8S site are left out)
    for name, spec in AMPLICONS.items():
        pair = parse_region(spec)
        with open(os.path.join(out, f"query-{name}.fasta"), "w") as fh:
            for i in query:
                a = amplicon(seqs[i], pair)
                if a is not None:
                    fh.write(f">{ids[i]}\n{a}\n")
    return len(ref), len(query)


AMPLICONS = {"its1": "ITS1-ITS2", "its2": "fITS7-ITS4"}


def write_mock_table(out):
    """FeatureTable[Frequency] of mock-9: 1,600 reads per sample split by
    the expected abundance of each member species."""
    import biom
    import numpy as np
    import qiime2
    rows = [line.rstrip("\n").split("\t") for line in
            open(os.path.join(DATA, "mock9-expected.tsv"))][1:]
    samples = ["Mock.1", "Mock.2", "Mock.3"]
    counts = np.array([[round(float(r[2]) * 1600)] * 3 for r in rows])
    table = biom.Table(counts, [r[0] for r in rows], samples)
    qiime2.Artifact.import_data("FeatureTable[Frequency]", table).save(
        os.path.join(out, "mock9-table.qza"))


def rank_scores(out, name="query"):
    """Per-rank accuracy (percent) of ``<name>-classification`` and the
    species accuracy on reads of reference species, with the number of
    reads scored. A query whose species (or genus) is absent from the
    reference is right at a rank only if nothing deeper than the reference
    knows is asserted."""
    truth = read_taxonomy(os.path.join(out, "query-taxonomy.tsv"))
    ref = read_taxonomy(os.path.join(out, "reference-taxonomy.tsv"))
    pred = read_taxonomy(os.path.join(out, f"{name}-classification",
                                      "taxonomy.tsv"))
    truth = {f: t for f, t in truth.items() if f in pred}
    known = [set(";".join(t.split(";")[:r + 1]) for t in ref.values())
             for r in range(len(RANKS))]
    scores = {}
    for r, rank in enumerate(RANKS):
        ok = 0
        for fid, t in truth.items():
            t_r = ";".join(t.split(";")[:r + 1])
            p = pred[fid].split(";")
            p_r = ";".join(p[:r + 1]) if len(p) > r and pred[fid] != \
                "Unassigned" else None
            ok += (p_r == t_r) if t_r in known[r] else (p_r is None)
        scores[rank] = 100 * ok / len(truth)
    seen = [f for f, t in truth.items() if t in ref.values()]
    sp_ok = sum(pred[f] == truth[f] for f in seen)
    return scores, 100 * sp_ok / max(len(seen), 1), len(seen), len(truth)


def accuracy_report(out):
    """Per-rank accuracy of the query classification vs the truth."""
    scores, seen_acc, n_seen, n = rank_scores(out)
    print("\nPer-rank accuracy on %d held-out query reads:" % n)
    print("  rank      right  (truth absent from reference counts as right "
          "only if not asserted)")
    for rank, v in scores.items():
        print(f"  {rank:8s} {v:6.1f} %")
    print(f"  species accuracy on reads of reference species: "
          f"{seen_acc:.1f} % of {n_seen}")


def region_report(out):
    """The same scores for the ITS1 and ITS2 amplicons of the query reads,
    classified by the same classifier, beside full ITS."""
    cols = {"full ITS": rank_scores(out)}
    for name, spec in AMPLICONS.items():
        cols[f"{name.upper()} ({spec})"] = rank_scores(out, f"query-{name}")
    print("\nThe same classifier on amplicons cut from the query reads "
          "(percent right):")
    print("  " + "rank".ljust(14) + "".join(c.rjust(22) for c in cols))
    for rank in RANKS:
        print("  " + rank.ljust(14) + "".join(
            f"{v[0][rank]:21.1f}%" for v in cols.values()))
    print("  " + "seen species".ljust(14) + "".join(
        f"{v[1]:21.1f}%" for v in cols.values()))
    print("  " + "reads".ljust(14) + "".join(
        f"{v[3]:22d}" for v in cols.values()))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--qiime", default="qiime")
    ap.add_argument("--output-dir", default="demo-output")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    q = os.path.abspath(args.qiime)
    t0 = time.time()
    n_ref, n_query = prepare_inputs(out, args.seed)
    print(f"reference: {n_ref} real full-ITS yeast barcodes; query: "
          f"{n_query} held-out reads", flush=True)
    write_mock_table(out)
    imports = [("FeatureData[Sequence]", "reference.fasta", "reference.qza"),
               ("FeatureData[Taxonomy]", "reference-taxonomy.tsv",
                "reference-taxonomy.qza"),
               ("FeatureData[Sequence]", "query.fasta", "query.qza"),
               *[("FeatureData[Sequence]", f"query-{n}.fasta",
                  f"query-{n}.qza") for n in AMPLICONS],
               ("FeatureData[Sequence]",
                os.path.join(DATA, "mock9-sequences.fasta"), "mock9-seqs.qza")]
    for qtype, src, dst in imports:
        run(q, "tools", "import", "--type", qtype, "--input-path", src,
            "--output-path", dst, cwd=out)
    t_fit = run(q, "barcodemamba", "fit-classifier",
                "--i-reference-reads", "reference.qza",
                "--i-reference-taxonomy", "reference-taxonomy.qza",
                "--p-epochs", str(args.epochs), "--p-random-seed",
                str(args.seed), "--p-n-threads", str(os.cpu_count() or 2),
                "--o-classifier", "classifier.qza", "--verbose", cwd=out)
    t_cls = run(q, "barcodemamba", "classify", "--i-reads", "query.qza",
                "--i-classifier", "classifier.qza",
                "--o-classification", "query-classification.qza", cwd=out)
    run(q, "tools", "export", "--input-path", "query-classification.qza",
        "--output-path", "query-classification", cwd=out)
    for name in AMPLICONS:
        run(q, "barcodemamba", "classify", "--i-reads", f"query-{name}.qza",
            "--i-classifier", "classifier.qza", "--o-classification",
            f"query-{name}-classification.qza", cwd=out)
        run(q, "tools", "export", "--input-path",
            f"query-{name}-classification.qza", "--output-path",
            f"query-{name}-classification", cwd=out)
    run(q, "barcodemamba", "classify", "--i-reads", "mock9-seqs.qza",
        "--i-classifier", "classifier.qza",
        "--o-classification", "classification.qza", cwd=out)
    run(q, "metadata", "tabulate", "--m-input-file", "classification.qza",
        "--o-visualization", "classification.qzv", cwd=out)
    run(q, "taxa", "barplot", "--i-table", "mock9-table.qza",
        "--i-taxonomy", "classification.qza", "--m-metadata-file",
        os.path.join(DATA, "mock9-sample-metadata.tsv"),
        "--o-visualization", "taxa-barplot.qzv", cwd=out)
    accuracy_report(out)
    region_report(out)
    print(f"\nfit-classifier {t_fit:.0f} s, classify {n_query} reads "
          f"{t_cls:.0f} s (incl. QIIME start-up); total "
          f"{time.time() - t0:.0f} s")
    print(f"Outputs in {out}: classifier.qza, classification.qza, "
          "classification.qzv, taxa-barplot.qzv "
          "(view with: .venv/bin/qiime tools view taxa-barplot.qzv, or "
          "https://view.qiime2.org)")


if __name__ == "__main__":
    main()
