"""Fit a classifier on a large shared reference and report time and memory.

    .venv/bin/python benchmarks/fit_large.py --set its2_unite_insd --epochs 2

Reads ../shared/data/its/<set>.{fasta,taxonomy.tsv}.gz (not in a user's
clone: the script says so and exits 2). Prints wall time, peak RSS, the
classifier's size on disk and classification throughput on 5,000 reads.
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from q2_barcodemamba.core.classifier import TaxonomicClassifier  # noqa
from q2_barcodemamba.core.config import TrainConfig  # noqa
from q2_barcodemamba.core.io import save_classifier  # noqa
from benchmarks.splits import load_set  # noqa


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", default="its2_unite_insd")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--n-threads", type=int, default=2)
    args = ap.parse_args()
    ids, seqs, tax = load_set(args.set)
    tc = TrainConfig(epochs=args.epochs, n_threads=args.n_threads)
    t = time.time()
    clf = TaxonomicClassifier(args.preset, train_config=tc).fit(ids, seqs,
                                                                tax)
    t_fit = time.time() - t
    d = tempfile.mkdtemp()
    save_classifier(clf, os.path.join(d, "clf"))
    size = sum(os.path.getsize(os.path.join(d, "clf", f))
               for f in os.listdir(os.path.join(d, "clf")))
    shutil.rmtree(d)
    t = time.time()
    n = sum(1 for _ in clf.predict(zip(ids[:5000], seqs[:5000]),
                                   progress=lambda m: None))
    t_cls = time.time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"set {args.set}: {len(ids)} reads, "
          f"{len(clf.labels.leaves)} leaf lineages, "
          f"{clf.summary['n_parameters']:,} parameters")
    print(f"fit {t_fit:.0f} s ({args.epochs} epochs + refit), classify "
          f"{n / t_cls:.0f} reads/s, peak RSS {peak:.0f} MiB, classifier "
          f"{size / 2 ** 20:.1f} MiB on disk")


if __name__ == "__main__":
    main()
