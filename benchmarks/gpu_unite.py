"""Issue 16's GPU measurements in one prepared run (for a lent GPU).

    python -m benchmarks.gpu_unite --data DIR --out gpu_unite.json

1. Fine-tune ``--preset`` (default ``paper-12m``, from random weights: no
   backbone of that size ships) on ``DIR/its2_unite_insd`` with the
   default training settings and ``--epochs`` (default 20, early
   stopping); fit wall time and peak GPU memory.
2. ``classify`` end to end (``TaxonomicClassifier.predict``: cleaning,
   orientation, tokenising, network, neighbours, walk, calibration) of
   ``--n-reads`` reads drawn from the set, with the preparation in a
   background thread (``prefetch``) on and off and with ``bf16`` on and
   off: reads/s and the share of calls identical to fp32.

``--device cpu --epochs 1 --n-reads 2000 --set its2_cbs`` runs the same
code on a CPU in a few minutes (a smoke test; numbers meaningless).
Writes one JSON file (``--out``) for docs/gpu.md.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import TrainConfig
from q2_barcodemamba.core.data import read_fasta, read_taxonomy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared",
                                                   "data", "its"))
    ap.add_argument("--set", default="its2_unite_insd")
    ap.add_argument("--preset", default="paper-12m")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n-reads", type=int, default=100000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="gpu_unite.json")
    ap.add_argument("--train-precision", default="fp32",
                    choices=("fp32", "bf16"),
                    help="fit under bfloat16 autocast (fit-classifier's "
                         "--p-precision)")
    a = ap.parse_args(argv)
    recs = list(read_fasta(os.path.join(a.data, f"{a.set}.fasta.gz")))
    tax = read_taxonomy(os.path.join(a.data, f"{a.set}.taxonomy.tsv.gz"))
    ids, seqs = [r[0] for r in recs], [r[1] for r in recs]
    out = {"set": a.set, "preset": a.preset, "device": a.device,
           "gpu": torch.cuda.get_device_name(0) if a.device == "cuda"
           else None, "torch": torch.__version__}
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.time()
    clf = TaxonomicClassifier(a.preset, train_config=TrainConfig(
        epochs=a.epochs, device=a.device,
        precision=a.train_precision)).fit(ids, seqs, tax)
    out["fit"] = {"seconds": time.time() - t,
                  "precision": a.train_precision,
                  "epochs_run": len(clf.summary["history"]),
                  "best_epoch": clf.summary["best_epoch"],
                  "n_parameters": clf.net.num_parameters(),
                  "n_leaves": len(clf.labels.leaves),
                  "validation_right_call": clf.calibration.get("score")}
    if a.device == "cuda":
        out["fit"]["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out["fit"]), flush=True)
    pick = np.random.default_rng(0).choice(len(recs), a.n_reads)
    reads = [(f"q{j}", seqs[i]) for j, i in enumerate(pick)]
    runs, calls = {}, {}
    # once untimed: the k-mer index, the memory on the device and the
    # kernels' first compilation are paid here, not by the first setting
    list(clf.predict(reads[:1000], device=a.device, progress=lambda m: None))
    for prefetch in (False, True):
        for precision in ("fp32", "bf16"):
            key = f"prefetch={prefetch},precision={precision}"
            t = time.time()
            got = list(clf.predict(reads, device=a.device, prefetch=prefetch,
                                   precision=precision,
                                   progress=lambda m: None))
            dt = time.time() - t
            calls[key] = [g[1] for g in got]
            runs[key] = {"reads_per_s": len(got) / dt}
            print(key, runs[key], flush=True)
    ref = calls["prefetch=False,precision=fp32"]
    for key, c in calls.items():
        runs[key]["identical_calls"] = float(np.mean(
            [x == y for x, y in zip(c, ref)]))
    out["classify"] = runs
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
