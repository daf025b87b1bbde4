"""fit-classifier and classify at UNITE scale on a CPU (issue 16).

    .venv/bin/python -m benchmarks.unite_scale [--set its2_unite_insd]

On the benchmark's standard split of a UNITE-derived set (held-out
queries never share a haplotype with the reference; species are mostly
singletons, so the queries are mostly reads of held-out species and
genera whose genus / family stays in the reference): fits the default
classifier (``TrainConfig()``, the shipped ``tiny`` backbone, 2 threads)
on the reference, with a thread sampling RSS every 20 ms; scores the test
queries with the benchmark's metrics; then classifies ``--reads`` reads
(reference reads drawn with a seed) for throughput and classify's peak
RSS (a fresh process, the saved classifier). Writes
``docs/results/unite_scale_<set>.json`` and the section between
``<!-- scale:start -->`` and ``<!-- scale:end -->`` of docs/benchmarks.md
(with ``benchmarks/scale_memory.py``'s result when present).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks import accuracy  # noqa: E402
from benchmarks.run import DEFAULT_DATA, PER_TAXON, _sizes  # noqa: E402
from benchmarks.shortlist_probe import table as shortlist_table  # noqa: E402
from benchmarks.splits import write_split  # noqa: E402

SIZES = _sizes((100, 300, 200), (50, 150, 100))
START, END = "<!-- scale:start -->", "<!-- scale:end -->"
RESULTS = os.path.join(REPO, "docs", "results")

# classify sys.argv[3] reads drawn with a seed from sys.argv[2] with the
# loaded classifier ``clf``: sets n, dt (seconds) and hwm (/proc lines)
CLASSIFY_READS = r"""
recs = list(read_fasta(sys.argv[2]))
pick = np.random.default_rng(1).choice(len(recs), int(sys.argv[3]))
t = time.time()
n = sum(1 for _ in clf.predict((("q%d" % j, recs[i][1]) for j, i in
                                enumerate(pick)), n_threads=2,
                               progress=lambda m: None))
dt = time.time() - t
# VmHWM, not ru_maxrss: a child started by fork + exec reports its parent's
# ru_maxrss when that was larger
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
"""
CLASSIFY = r"""
import json, sys, time
import numpy as np
from q2_barcodemamba.core.io import load_classifier
from q2_barcodemamba.core.data import read_fasta
clf = load_classifier(sys.argv[1])
""" + CLASSIFY_READS + r"""
print(json.dumps({"reads": n, "seconds": dt, "reads_per_s": n / dt,
                  "peak_rss_mib": int(hwm[0].split()[1]) / 1024}))
"""


def classify(path: str, fasta: str, reads: int) -> dict:
    """Throughput and peak RSS of classify in a fresh process."""
    run = subprocess.run([sys.executable, "-c", CLASSIFY, path, fasta,
                          str(reads)], capture_output=True, text=True,
                         cwd=REPO, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def classify_runs(path: str, fasta: str, reads: int, repeats: int) -> dict:
    """:func:`classify` ``repeats`` times: mean reads/s, the highest peak
    RSS, and every run's reads/s (``runs``)."""
    runs = [classify(path, fasta, reads) for _ in range(max(1, repeats))]
    rate = [r["reads_per_s"] for r in runs]
    return {"reads": reads, "reads_per_s": sum(rate) / len(rate),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "runs": rate}


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = rss_mib(), False

    def run(self):
        while not self.done:
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.02)


def section(results: dict) -> str:
    L = [START, "## UNITE scale on a CPU", "",
         "`python -m benchmarks.unite_scale` (fit and classify on the "
         "standard split of a UNITE-derived set, default classifier, 2 "
         "threads) and `python -m benchmarks.scale_memory` (a synthetic "
         "reference 10x that size, memory by stage). Raw: "
         "`docs/results/unite_scale_*.json`, "
         "`docs/results/scale_memory.json`.", ""]
    for name, r in sorted(results.items()):
        if name in ("scale_memory", "lineage_scaling", "shortlist_probe"):
            continue
        s = r["scores"]
        L += [f"### {name}", "",
              f"Reference {r['n_reference']:,} reads, "
              f"{r['n_leaves']:,} lineages, "
              f"{r['n_parameters']:,} parameters; "
              f"{r['best_epoch']} epochs chosen of {r['epochs_run']} run.",
              "",
              "| fit wall | fit peak RSS | classify reads/s | classify peak "
              "RSS | classifier on disk |", "|---|---|---|---|---|",
              f"| {r['fit_seconds'] / 60:.0f} min"
              + (f" (CPU time / 2: {r['fit_cpu_seconds'] / 120:.0f} min)"
                 if "fit_cpu_seconds" in r else "") + " | "
              f"{r['fit_peak_rss_mib'] / 1024:.2f} GiB | "
              f"{rate_text(r['classify'])} | "
              f"{r['classify']['peak_rss_mib'] / 1024:.2f} GiB | "
              f"{r['classifier_mib']:.0f} MiB |", "",
              f"Test queries ({r['n_queries']}): right call "
              f"{s['right_call']:.1f} %, unseen species: genus "
              f"{s['unseen_species_genus_accuracy']:.1f} % (species "
              f"over-call {s['unseen_species_overcall']:.1f} %), "
              f"unseen genera: family "
              f"{s['unseen_genus_family_accuracy']:.1f} %.", ""]
        if r.get("notes"):
            L += [r["notes"], ""]
    m = results.get("scale_memory")
    if m and m.get("partial"):
        # a run stopped before the end: what it measured, and why it stopped
        L += [f"### Synthetic {m['factor']}x reference: memory (partial run)",
              "", f"{m['reads']:,} reads, {m['lineages']:,} lineages "
              f"({m['n_parameters']:,} parameters). Peak RSS "
              f"{m['peak_rss_mib'] / 1024:.1f} GiB up to the stage where the "
              f"run was stopped.", "", m["notes"], "",
              "| stage | RSS at its start MiB | starts at s |", "|---|---|---|"]
        L += [f"| {k} | {v['rss_mib']:,} | {v['t_start_s']:,} |"
              for k, v in m["stages"].items()]
        L.append("")
    elif m:
        L += [f"### Synthetic {m['factor']}x reference: memory", "",
              f"{m['reads']:,} reads, {m['lineages']:,} lineages "
              f"({m['n_parameters']:,} parameters), epoch cut to "
              f"{m['steps_per_epoch']} steps (all other stages whole). "
              f"Fit peak RSS {m['fit_peak_rss_mib'] / 1024:.2f} GiB; "
              f"classify {m['classify_reads_per_s']} reads/s; classifier "
              f"{m['classifier_mib_on_disk']:.0f} MiB.", "",
              "| stage | peak RSS MiB | starts at s |", "|---|---|---|"]
        L += [f"| {k} | {v['peak_mib']:,} | {v['t_start_s']:,} |"
              for k, v in m["stages"].items()]
        L.append("")
        if m.get("notes"):
            L += [m["notes"], ""]
    L += lineage_rows(results.get("lineage_scaling"))
    L += shortlist_table(results.get("shortlist_probe", {}))
    L.append(END)
    return "\n".join(L)


def lineage_rows(g) -> list:
    """The table of ``benchmarks.lineage_scaling``'s result (or none)."""
    if not g:
        return []
    L = ["### Classify cost against the number of lineages", "",
         f"`python -m benchmarks.lineage_scaling`: synthetic copies of "
         f"{g.get('classifier_text') or '`%s`' % g['classifier']} "
         f"(every lineage and its reference reads "
         f"copied with noise; no fitting), {g['reads']:,} reads per size, "
         "fresh process, 2 threads. reads/s after the k-mer index build, "
         "which is reported apart (once per process).", "",
         "| size | copies are new | lineages | reference reads | load s | "
         "index build s | reads/s | peak RSS |",
         "|---|---|---|---|---|---|---|---|"]
    L += [f"| {r['factor']}x | {r.get('grow', 'species')} | "
          f"{r['lineages']:,} | {r['reference_reads']:,}"
          f" | {r['load_s']:.1f} | {r['index_s']:.1f} | "
          f"{r['reads_per_s']:.0f} | {r['peak_rss_mib'] / 1024:.2f} GiB |"
          for r in g["rows"]]
    L.append("")
    if g.get("notes"):
        L += [g["notes"], ""]
    return L


def rate_text(c: dict) -> str:
    """Classify reads/s, with the spread when several runs were made."""
    runs = c.get("runs", [])
    if len(runs) < 2:
        return f"{c['reads_per_s']:.0f}"
    return (f"{c['reads_per_s']:.0f} (mean of {len(runs)} runs, "
            f"{min(runs):.0f}-{max(runs):.0f})")


def write_section(results: dict) -> None:
    path = os.path.join(REPO, "docs", "benchmarks.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    new = section(results)
    if START in text and END in text:
        text = text[:text.index(START)] + new + text[text.index(END)
                                                     + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def collect() -> dict:
    out = {}
    for f in sorted(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else []:
        if f.startswith("unite_scale_") and f.endswith(".json"):
            with open(os.path.join(RESULTS, f)) as fh:
                out[f[len("unite_scale_"):-5]] = json.load(fh)
        if f == "lineage_scaling.json":
            with open(os.path.join(RESULTS, f)) as fh:
                out["lineage_scaling"] = json.load(fh)
        if f.startswith("shortlist_probe_") and f.endswith(".json"):
            with open(os.path.join(RESULTS, f)) as fh:
                out.setdefault("shortlist_probe", {})[
                    f[len("shortlist_probe_"):-5]] = json.load(fh)
        if f == "scale_memory.json":
            with open(os.path.join(RESULTS, f)) as fh:
                out["scale_memory"] = json.load(fh)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", default="its2_unite_insd")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=os.path.join(HERE, "results",
                                                  "unite_scale"))
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=1,
                    help="classify runs (fresh processes) to average: on a "
                         "shared 2-core VM one run varies by +-10 %%")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--classify-only", action="store_true",
                    help="re-measure classify with the classifier a "
                         "previous run saved (on an otherwise idle machine)")
    args = ap.parse_args()
    if args.report_only:
        write_section(collect())
        return
    fasta = os.path.join(args.data, f"{args.set}.fasta.gz")
    tax = os.path.join(args.data, f"{args.set}.taxonomy.tsv.gz")
    if not os.path.exists(fasta):
        print(f"{fasta} not found: this benchmark needs the project's "
              "shared data.", file=sys.stderr)
        sys.exit(2)
    ds_dir = os.path.join(args.out, args.set)
    if args.classify_only:
        out = os.path.join(RESULTS, f"unite_scale_{args.set}.json")
        with open(out) as fh:
            res = json.load(fh)
        res["classify"] = classify_runs(os.path.join(ds_dir, "classifier"),
                                        fasta, args.reads, args.repeats)
        print(json.dumps(res["classify"]))
        with open(out, "w") as fh:
            json.dump(res, fh, indent=1)
        write_section(collect())
        return
    write_split(os.path.join(ds_dir, "split"), args.set, fasta, tax, SIZES,
                PER_TAXON, 0)
    ids, seqs, taxa = accuracy.load_split(ds_dir)
    from q2_barcodemamba.core.backbones import shipped_backbone
    from q2_barcodemamba.core.classifier import TaxonomicClassifier
    from q2_barcodemamba.core.config import TrainConfig
    from q2_barcodemamba.core.io import save_classifier
    sampler = PeakRSS()
    sampler.start()
    t, cpu = time.time(), os.times()
    clf = TaxonomicClassifier("tiny", train_config=TrainConfig(
        n_threads=2)).fit(ids, seqs, taxa, backbone=shipped_backbone())
    fit_s = time.time() - t
    # CPU seconds as well as wall: when something else shared the 2 cores,
    # cpu / 2 is what the fit would take on them alone (roughly)
    fit_cpu = sum(os.times()[:2]) - sum(cpu[:2])
    sampler.done = True
    scores = accuracy.score(clf, ds_dir)
    path = os.path.join(ds_dir, "classifier")
    save_classifier(clf, path)
    size = sum(os.path.getsize(os.path.join(path, f))
               for f in os.listdir(path))
    res = {"set": args.set, "n_reference": len(ids),
           "n_leaves": len(clf.labels.leaves),
           "n_parameters": clf.net.num_parameters(),
           "best_epoch": clf.summary["best_epoch"],
           "epochs_run": len(clf.summary["history"]),
           "fit_seconds": fit_s, "fit_cpu_seconds": fit_cpu,
           "fit_peak_rss_mib": sampler.peak,
           "classifier_mib": size / 2**20, "n_queries": scores["n_queries"],
           "scores": scores,
           "classify": classify(path, fasta, args.reads)}
    print(json.dumps(res, indent=1))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"unite_scale_{args.set}.json"),
              "w") as fh:
        json.dump(res, fh, indent=1)
    write_section(collect())


if __name__ == "__main__":
    main()
