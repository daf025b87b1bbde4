"""Peak memory of fit-classifier and classify on a reference ten times the
size of UNITE's ITS2 set (issue 16): a synthetic reference, measured
stage by stage.

    .venv/bin/python -m benchmarks.scale_memory --factor 10 --steps 200

The reference: every read of ``../shared/data/its/its2_unite_insd`` (42,916
reads, 41,700 lineages) ``factor`` times, each copy with 2 % random
substitutions (seeded) and its own species name (``<species>_copy<j>``),
so reads, species and leaf lineages all grow ``factor``-fold (429,160
reads and ~417,000 lineages at 10x; a full UNITE release has 10^5-10^6).

What is measured is memory, not convergence: fitting runs the whole
pipeline (checks, tokeniser, labels, split, amplicon cut-outs, validation
memory and k-mer neighbours, training, per-epoch validation score,
embedding every row, calibration, the reference memory, saving), with
the training epoch cut to ``--steps`` optimisation steps (every other
stage is whole). A thread samples the process's RSS every 20 ms; the peak
of each stage is attributed by the progress messages. Then 5,000 reads
are classified with the saved classifier. Writes
``docs/results/scale_memory.json`` (``--out``).

Cost on 2 cores (2026-12-02/03, factor 10, 100 steps, 2,574 scored
validation rows): 100 min wall with the cores shared and ~15 min paused;
peak RSS 8.8 GiB (docs/results/scale_memory.json). Plan for 1.5 h alone.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from q2_barcodemamba.core import loop, train  # noqa: E402
from q2_barcodemamba.core.backbones import shipped_backbone  # noqa: E402
from q2_barcodemamba.core.classifier import TaxonomicClassifier  # noqa
from q2_barcodemamba.core.config import TrainConfig  # noqa: E402
from q2_barcodemamba.core.io import load_classifier, save_classifier  # noqa
from benchmarks.splits import load_set  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Sampler(threading.Thread):
    """RSS every ``every`` s; ``mark(name)`` starts a new stage."""

    def __init__(self, every: float = 0.02):
        super().__init__(daemon=True)
        self.every, self.stage, self.t0 = every, "start", time.time()
        self.stages = {"start": {"peak_mib": rss_mib(), "t_start": 0.0}}
        self.done = False

    def mark(self, name: str) -> None:
        self.stage = name
        self.stages.setdefault(name, {"peak_mib": rss_mib(),
                                      "t_start": time.time() - self.t0})

    def run(self) -> None:
        while not self.done:
            st = self.stages[self.stage]
            st["peak_mib"] = max(st["peak_mib"], rss_mib())
            time.sleep(self.every)


def synthetic(ids, seqs, tax, factor: int, rate: float, seed: int):
    rng = np.random.default_rng(seed)
    out_ids, out_seqs, out_tax = [], [], {}
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    for j in range(factor):
        for rid, s in zip(ids, seqs):
            new = f"{rid}_copy{j}" if j else rid
            lin = tax[rid].split(";")
            if j:
                raw = np.frombuffer(s.upper().encode(), dtype=np.uint8).copy()
                hit = rng.random(len(raw)) < rate
                raw[hit] = bases[rng.integers(0, 4, hit.sum())]
                s = raw.tobytes().decode()
                lin[-1] = f"{lin[-1].strip()}_copy{j}"
            out_ids.append(new)
            out_seqs.append(s)
            out_tax[new] = ";".join(lin)
    return out_ids, out_seqs, out_tax


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", default="its2_unite_insd")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--n-threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs",
                                                  "results",
                                                  "scale_memory.json"))
    args = ap.parse_args()
    sampler = Sampler()
    sampler.start()
    ids, seqs, tax = load_set(args.set)
    ids, seqs, tax = synthetic(ids, seqs, tax, args.factor, 0.02, 0)
    n_leaves = len({t for t in tax.values()})
    print(f"synthetic reference: {len(ids)} reads, {n_leaves} lineages",
          flush=True)
    sampler.mark("reference in memory")

    # cut every training epoch to --steps steps; all else runs whole
    full = loop.epoch_batches

    def capped(lengths, batch_size, seed):
        f = full(lengths, batch_size, seed)
        return lambda epoch: f(epoch)[:args.steps]
    train.epoch_batches = capped

    def progress(msg: str) -> None:
        print(f"[{time.time() - sampler.t0:7.0f} s, {rss_mib():6.0f} MiB] "
              f"{msg}", flush=True)
        for key, stage in (("reference:", "split + cut-outs + validation "
                            "memory"), ("training", "training"),
                           ("epoch", "validation score"),
                           ("abstention", "calibration"),
                           ("calibration:", "reference memory + k-mer "
                            "index")):
            if msg.startswith(key):
                sampler.mark(stage)

    tc = TrainConfig(epochs=1, n_threads=args.n_threads)
    t = time.time()
    clf = TaxonomicClassifier("tiny", train_config=tc).fit(
        ids, seqs, tax, progress=progress, backbone=shipped_backbone())
    t_fit = time.time() - t
    sampler.mark("save")
    d = tempfile.mkdtemp()
    save_classifier(clf, os.path.join(d, "clf"))
    size = sum(os.path.getsize(os.path.join(d, "clf", f))
               for f in os.listdir(os.path.join(d, "clf")))
    fit_peak = max(s["peak_mib"] for s in sampler.stages.values())
    del clf
    sampler.mark("classify 5,000 reads (loaded classifier)")
    clf = load_classifier(os.path.join(d, "clf"))
    pick = np.random.default_rng(1).choice(len(ids), 5000, replace=False)
    t = time.time()
    n = sum(1 for _ in clf.predict(((ids[i], seqs[i]) for i in pick),
                                   n_threads=args.n_threads,
                                   progress=lambda m: None))
    t_cls = time.time() - t
    sampler.done = True
    out = {
        "set": args.set, "factor": args.factor, "reads": len(ids),
        "lineages": n_leaves, "steps_per_epoch": args.steps,
        "n_threads": args.n_threads,
        "n_parameters": clf.net.num_parameters(),
        "fit_seconds_with_capped_epoch": round(t_fit),
        "fit_peak_rss_mib": round(fit_peak),
        "classifier_mib_on_disk": round(size / 2**20, 1),
        "classify_reads_per_s": round(n / t_cls),
        "process_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stages": {k: {"peak_mib": round(v["peak_mib"]),
                       "t_start_s": round(v["t_start"])}
                   for k, v in sampler.stages.items()},
    }
    print(json.dumps(out, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
