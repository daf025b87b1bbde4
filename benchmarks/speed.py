"""Throughput of barcodemamba classify: batch size x threads, and scaling
with the number of reads (time should grow linearly, memory stay flat).

The batch-size/threads sweep runs in this process through the core API
(``TaxonomicClassifier.predict``, what the action streams through), so no
start-up is included. The scaling runs use the QIIME 2 CLI under GNU time
on reads sampled with replacement from the split's query reads (ids made
unique); the one-read start-up time of the classify action is subtracted.
"""
import json
import os
import random
import time
from typing import List, Sequence

from q2_barcodemamba.core.data import read_fasta

from .provenance import stamp


def sample_reads(fasta_paths: Sequence[str], n: int, seed: int):
    """``n`` (id, seq) records drawn with replacement from the files."""
    pool = [s for p in fasta_paths for _, s in read_fasta(p)]
    rng = random.Random(seed)
    return [(f"r{i:07d}", pool[rng.randrange(len(pool))]) for i in range(n)]


def sweep(classifier_qza: str, fasta_paths: Sequence[str], n_reads: int,
          batch_sizes: list, threads: List[int], out_json: str,
          seed: int = 0) -> dict:
    """reads/s for each (threads, batch size); a batch size may be "auto"
    (classify's default). Cached in ``out_json``."""
    mtime = os.path.getmtime(classifier_qza)
    if os.path.exists(out_json):
        with open(out_json) as fh:
            res = json.load(fh)
        if res.get("classifier_mtime") == mtime and \
                res.get("batch_sizes") == list(batch_sizes):
            return res
    import qiime2
    import torch
    from q2_barcodemamba.core.classifier import TaxonomicClassifier
    clf = qiime2.Artifact.load(classifier_qza).view(TaxonomicClassifier)
    records = sample_reads(fasta_paths, n_reads, seed)
    quiet = lambda m: None  # noqa: E731
    old_threads = torch.get_num_threads()
    rows = []
    try:
        for t in threads:
            for b in batch_sizes:
                list(clf.predict(records[:64], batch_size=b, n_threads=t,
                                 device="cpu", progress=quiet))  # warm-up
                start = time.perf_counter()
                n = sum(1 for _ in clf.predict(records, batch_size=b,
                                               n_threads=t, device="cpu",
                                               progress=quiet))
                sec = time.perf_counter() - start
                rows.append({"threads": t, "batch_size": b, "reads": n,
                             "seconds": sec, "reads_per_second": n / sec})
                print(f"  sweep: {t} threads, batch {b}: {n / sec:.0f} "
                      "reads/s", flush=True)
    finally:
        torch.set_num_threads(old_threads)
    res = {"n_reads": n_reads, "rows": rows, "classifier_mtime": mtime,
           "batch_sizes": list(batch_sizes), "measured": stamp()}
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)
    return res


def scaling(run, rel_dir: str, classifier_qza: str,
            fasta_paths: Sequence[str], sizes: List[int],
            startup_seconds: float, seed: int = 0) -> List[dict]:
    """CLI classify time and peak RSS per number of reads; one JSON per
    size in ``rel_dir`` (relative to the runner's directory, as is
    ``classifier_qza``) so an interrupted run resumes."""
    work_dir = os.path.join(run.cwd, rel_dir)
    os.makedirs(work_dir, exist_ok=True)
    mtime = os.path.getmtime(os.path.join(run.cwd, classifier_qza))
    rows = []
    for n in sizes:
        path = os.path.join(work_dir, f"{n}.json")
        if os.path.exists(path):
            with open(path) as fh:
                row = json.load(fh)
            if row.get("classifier_mtime") == mtime:
                rows.append(row)
                continue
        fasta = os.path.join(rel_dir, f"reads-{n}.fasta")
        with open(os.path.join(run.cwd, fasta), "w") as fh:
            for rid, s in sample_reads(fasta_paths, n, seed):
                fh.write(f">{rid}\n{s}\n")
        qza = os.path.join(rel_dir, f"reads-{n}.qza")
        out = os.path.join(rel_dir, f"classified-{n}.qza")
        t = time.perf_counter()
        run("tools", "import", "--type", "FeatureData[Sequence]",
            "--input-path", fasta, "--output-path", qza)
        import_s = time.perf_counter() - t
        stats = run("barcodemamba", "classify", "--i-reads", qza,
                    "--i-classifier", classifier_qza,
                    "--o-classification", out)
        net = stats["seconds"] - startup_seconds
        row = {"reads": n, "seconds": stats["seconds"],
               "seconds_without_startup": net,
               "reads_per_second": n / net if net > 0 else float("nan"),
               "peak_rss_mib": stats["peak_rss_mib"],
               "import_seconds": import_s, "classifier_mtime": mtime,
               "measured": stamp()}
        for p in (fasta, qza, out):
            os.remove(os.path.join(run.cwd, p))
        with open(path, "w") as fh:
            json.dump(row, fh, indent=1)
        print(f"  scaling: {n} reads in {stats['seconds']:.1f} s, peak RSS "
              f"{stats['peak_rss_mib']:.0f} MiB", flush=True)
        rows.append(row)
    return rows
