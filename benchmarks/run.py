"""Benchmark q2-barcodemamba against classify-sklearn, vsearch and BLAST.

    .venv/bin/python -m benchmarks.run --quick [--out DIR]   # < 15 min, CI
    .venv/bin/python -m benchmarks.run --full  [--out DIR]   # hours on CPU

Builds evaluation splits (seen species / unseen species / unseen genera;
test and validation queries) from real ITS data, runs every method through
the QIIME 2 CLI on the same reference and queries, scores them, measures
calibration, throughput and scaling, probes a nearest-neighbour component
over barcodemamba's embeddings (benchmarks/knn_probe.py), and writes a
Markdown report with
PNG plots (``--full``: docs/benchmarks.md and docs/images/bench-*.png;
``--quick``: into the output directory). Results of finished steps are kept
in the output directory and skipped when the command is run again, so an
interrupted ``--full`` run resumes.

Data: ``--data-dir`` (default ../shared/data/its next to the repository).
When it is absent, ``its_full_cbs_yeasts`` is read from the copy bundled in
q2_barcodemamba/data, so ``--quick`` works in a fresh clone; ``its2_cbs``
(``--full``) needs the shared data.
"""
import argparse
import json
import os
import resource
import shlex
import sys
import time

from q2_barcodemamba.core.data import read_fasta
from q2_barcodemamba.core.taxonomy import normalize_lineage

from . import knn_probe, metrics, report
from .calibration import (barcodemamba_rank_calls, best_threshold,
                          naive_bayes_rank_calls)
from .methods import method_list, run_method
from .qiime_cli import REPO, Runner, check_tools, find_qiime, \
    read_classification
from .speed import scaling, sweep
from .splits import SHARED, read_taxonomy, read_truth, write_split

BUNDLED = os.path.join(REPO, "q2_barcodemamba", "data")
DEFAULT_DATA = SHARED
N_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
    else (os.cpu_count() or 1)


def _sizes(test, val):
    keys = ("seen", "unseen_species", "unseen_genus")
    return {"test": dict(zip(keys, test)), "val": dict(zip(keys, val))}


MODES = {
    "quick": {
        "datasets": {"its_full_cbs_yeasts": _sizes((60, 35, 30),
                                                   (30, 20, 15))},
        "epochs": 1, "scaling": [1000, 10000], "sweep_reads": 300,
        "batch_sizes": [16, 256, "auto"], "threads": [1, 2]},
    "full": {
        "datasets": {"its_full_cbs_yeasts": _sizes((150, 100, 80),
                                                   (70, 50, 40)),
                     "its2_cbs": _sizes((600, 300, 200), (300, 150, 100)),
                     # UNITE QIIME release: ~80 % singleton species, so
                     # queries are mostly reads of held-out species and
                     # genera whose genus / family stays in the reference
                     "its1_unite_qiime_v7": _sizes((100, 250, 150),
                                                   (50, 120, 70))},
        # ITS2 reads (~180 bp) for the 1k..1M scaling: 1M full-ITS reads
        # would take ~1.5 h on 2 cores; time per base is in the sweep
        "scaling_dataset": "its2_cbs",
        "epochs": None, "scaling": [1000, 10000, 100000, 1000000],
        "sweep_reads": 4000, "batch_sizes": [16, 64, 256, 1024, "auto"],
        "threads": sorted({1, 2, N_CPUS})},
}
PER_TAXON = {"seen": 2, "unseen_species": 2, "unseen_genus": 3}


def data_files(data_dir: str, name: str):
    """(fasta, taxonomy) of a data set: the shared copy, else the bundled
    one; exits naming what is missing."""
    for d in (data_dir, BUNDLED):
        fasta = os.path.join(d, f"{name}.fasta.gz")
        tax = os.path.join(d, f"{name}.taxonomy.tsv.gz")
        if os.path.exists(fasta) and os.path.exists(tax):
            if d == BUNDLED and os.path.abspath(data_dir) != BUNDLED:
                print(f"{data_dir} has no {name}: using the bundled copy "
                      f"in {BUNDLED}", flush=True)
            return fasta, tax
    raise SystemExit(f"Data set {name} not found in {data_dir} (nor "
                     "bundled). It is in the project's shared data "
                     "(../shared/data/its), which a user's clone lacks: "
                     "pass --data-dir, or use --quick.")


def calibrate(ds_dir: str, method_names, prefixes) -> dict:
    """ECE per rank and right-call vs threshold for NB and barcodemamba;
    the threshold is chosen on the validation queries, scored on test.
    Cached per method in calibration.json."""
    path = os.path.join(ds_dir, "calibration.json")
    cal = {}
    if os.path.exists(path):
        with open(path) as fh:
            cal = json.load(fh)
    parts = {}
    for part in ("val", "test"):
        recs = list(read_fasta(os.path.join(ds_dir, "split",
                                            f"{part}.fasta")))
        truth = metrics.Truth(read_truth(os.path.join(
            ds_dir, "split", f"{part}-truth.tsv")), prefixes)
        parts[part] = ([r[0] for r in recs], [r[1] for r in recs], truth)
    for name in method_names:
        qza = os.path.join(ds_dir, "methods", name, "classifier.qza")
        if cal.get(name, {}).get("classifier_mtime") == os.path.getmtime(qza):
            continue
        res = {"classifier_mtime": os.path.getmtime(qza)}
        for part, (ids, seqs, truth) in parts.items():
            if name == "naive-bayes":
                labels, conf = naive_bayes_rank_calls(qza, seqs)
                default = 0.7
            else:
                labels, conf, default = barcodemamba_rank_calls(qza, seqs)
            res[part] = metrics.threshold_curve(truth, labels, conf, ids)
            if part == "test":
                res.update(metrics.calibration_error(truth, labels, conf,
                                                     ids))
                mine = dict(zip(ids, metrics.calls_at(labels, conf,
                                                      default)))
                at_default = metrics.evaluate(truth, mine)["right_call"]
                cli = read_classification(os.path.join(
                    ds_dir, "methods", name, "test.qza"))
                same = sum(normalize_lineage(mine[i])
                           == normalize_lineage(cli[i][0]) for i in ids)
                res["cli_agreement"] = 100 * same / len(ids)
        ts = res["test"]["thresholds"]
        best = best_threshold(res["val"])
        res.update({
            "default_threshold": default, "best_val_threshold": best,
            "test_right_call_at": {
                "0.7": res["test"]["right_call"][ts.index(0.7)],
                "best_val": res["test"]["right_call"][ts.index(best)],
                "default": at_default}})
        cal[name] = res
        with open(path, "w") as fh:
            json.dump(cal, fh, indent=1)
    return cal


def run_dataset(name, sizes, files, args, qiime, seed):
    fasta, tax = files
    ds_dir = os.path.join(args.out, name)
    t = time.time()
    split = write_split(os.path.join(ds_dir, "split"), name, fasta, tax,
                        sizes, PER_TAXON, seed)
    print(f"[{name}] split: reference {split['n_reference']}, queries "
          f"{split['queries']} ({time.time() - t:.0f} s)", flush=True)
    log = []
    run = Runner(qiime, ds_dir, log)
    os.makedirs(os.path.join(ds_dir, "qza"), exist_ok=True)
    one = os.path.join(ds_dir, "qza", "one.fasta")
    rid, seq = next(read_fasta(os.path.join(ds_dir, "split", "test.fasta")))
    with open(one, "w") as fh:
        fh.write(f">{rid}\n{seq}\n")
    run.import_fasta("split/reference.fasta", "qza/reference.qza")
    run.import_taxonomy("split/reference-taxonomy.tsv",
                        "qza/reference-taxonomy.qza")
    run.import_fasta("split/test.fasta", "qza/test.qza")
    run.import_fasta("qza/one.fasta", "qza/one.qza")
    prefixes = metrics.reference_prefixes(read_taxonomy(
        os.path.join(ds_dir, "split", "reference-taxonomy.tsv")))
    truth = metrics.Truth(read_truth(os.path.join(ds_dir, "split",
                                                  "test-truth.tsv")),
                          prefixes)
    methods = method_list(args.presets, args.epochs, N_CPUS,
                          args.barcodemamba_fit_args)
    if args.methods:
        methods = [m for m in methods if m.name in args.methods]
    results = {}
    for m in methods:
        t = time.time()
        res = run_method(m, ds_dir, run,
                         lambda calls: metrics.evaluate(truth, calls))
        results[m.name] = res
        print(f"[{name}] {m.name}: right call "
              f"{res['metrics']['right_call']:.1f} %, "
              f"{report._f(res['reads_per_second'], 0)} reads/s "
              f"({time.time() - t:.0f} s)", flush=True)
    cal_methods = [m for m in results if m == "naive-bayes"
                   or m.startswith("barcodemamba")]
    t = time.time()
    cal = calibrate(ds_dir, cal_methods, prefixes)
    print(f"[{name}] calibration ({time.time() - t:.0f} s)", flush=True)
    out = {"split": split, "methods": results, "calibration": cal,
           "data": {"fasta": fasta, "taxonomy": tax}}
    if "barcodemamba" in results and not args.no_speed:
        t = time.time()
        out["knn_probe"] = knn_probe.probe(
            ds_dir, progress=lambda m: print(m, flush=True))
        print(f"[{name}] nearest-neighbour probe ({time.time() - t:.0f} s)",
              flush=True)
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true",
                      help="small split of the full-ITS yeasts, few epochs")
    mode.add_argument("--full", action="store_true",
                      help="both regions, default training (hours on CPU)")
    ap.add_argument("--out", help="work/results directory (default "
                    "benchmarks/results/<mode>)")
    ap.add_argument("--data-dir", default=DEFAULT_DATA)
    ap.add_argument("--report-dir", help="where benchmarks.md and "
                    "images/ go (default: docs/ for --full, --out for "
                    "--quick)")
    ap.add_argument("--presets", default="",
                    help="extra barcodemamba presets, comma-separated")
    ap.add_argument("--epochs", type=int, default=-1,
                    help="barcodemamba --p-epochs (default: 1 in quick "
                    "mode, the action's default in full mode)")
    ap.add_argument("--barcodemamba-fit-args", default="",
                    help="extra arguments for `qiime barcodemamba "
                    "fit-classifier`, in the = form: "
                    "--barcodemamba-fit-args='--p-heads single'")
    ap.add_argument("--methods", default="",
                    help="only these methods (comma-separated; for tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", default="",
                    help="only these data sets (comma-separated)")
    ap.add_argument("--scaling", default="",
                    help="read counts of the classify scaling run "
                    "(comma-separated; default: the mode's, up to "
                    "1,000,000 in --full)")
    ap.add_argument("--no-speed", action="store_true",
                    help="skip the throughput sweep, the 1k-1M scaling "
                    "and the nearest-neighbour probe (accuracy only)")
    args = ap.parse_args(argv)
    args.mode = "quick" if args.quick else "full"
    cfg = MODES[args.mode]
    args.out = os.path.abspath(args.out or os.path.join(
        REPO, "benchmarks", "results", args.mode))
    args.report_dir = os.path.abspath(args.report_dir or (
        os.path.join(REPO, "docs") if args.full else args.out))
    args.presets = [p for p in args.presets.split(",") if p]
    args.methods = [m for m in args.methods.split(",") if m]
    args.barcodemamba_fit_args = shlex.split(args.barcodemamba_fit_args)
    if args.epochs == -1:
        args.epochs = cfg["epochs"]
    if args.datasets:
        keep = args.datasets.split(",")
        unknown = sorted(set(keep) - set(cfg["datasets"]))
        if unknown:
            ap.error(f"unknown data sets {unknown}; {args.mode} mode has "
                     f"{sorted(cfg['datasets'])}")
        cfg = dict(cfg, datasets={k: v for k, v in cfg["datasets"].items()
                                  if k in keep})
    if args.scaling:
        try:
            sizes = [int(x) for x in args.scaling.split(",") if x]
        except ValueError:
            ap.error(f"--scaling takes read counts such as 1000,10000, "
                     f"not {args.scaling!r}")
        if not sizes or min(sizes) < 1:
            ap.error("--scaling needs positive read counts")
        cfg = dict(cfg, scaling=sizes)
    if args.no_speed:
        cfg = dict(cfg, sweep_reads=0, scaling=[])
    return args, cfg


def main(argv=None):
    args, cfg = parse_args(argv)
    check_tools()
    qiime = find_qiime()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    results = {"mode": args.mode, "argv": sys.argv[1:], "n_cpus": N_CPUS,
               "epochs": args.epochs, "seed": args.seed, "datasets": {}}
    files = {name: data_files(args.data_dir, name)
             for name in cfg["datasets"]}      # all found before any work
    for name, sizes in cfg["datasets"].items():
        results["datasets"][name] = run_dataset(name, sizes, files[name],
                                                args, qiime, args.seed)
    first = next(iter(cfg["datasets"]))
    results["sweeps"] = {}
    for name, ds in results["datasets"].items():
        if "barcodemamba" not in ds["methods"] or not cfg["sweep_reads"]:
            continue
        ds_dir = os.path.join(args.out, name)
        t = time.time()
        results["sweeps"][name] = sweep(
            os.path.join(ds_dir, "methods", "barcodemamba", "classifier.qza"),
            [os.path.join(ds_dir, "split", f"{p}.fasta")
             for p in ("test", "val")], cfg["sweep_reads"],
            cfg["batch_sizes"], cfg["threads"],
            os.path.join(ds_dir, "sweep.json"), args.seed)
        print(f"[{name}] sweep ({time.time() - t:.0f} s)", flush=True)
    name = cfg.get("scaling_dataset", first)
    ds = results["datasets"].get(name, {"methods": {}})
    if "barcodemamba" in ds["methods"] and cfg["scaling"]:
        ds_dir = os.path.join(args.out, name)
        clf = os.path.join(name, "methods", "barcodemamba", "classifier.qza")
        queries = [os.path.join(ds_dir, "split", f"{p}.fasta")
                   for p in ("test", "val")]
        t = time.time()
        startup = ds["methods"]["barcodemamba"]["startup_seconds"]
        log = []
        rows = scaling(Runner(qiime, args.out, log), f"scaling-{name}", clf,
                       queries, cfg["scaling"], startup, args.seed)
        results["scaling"] = {"dataset": name, "rows": rows,
                              "commands": log[:2]}
        print(f"scaling ({time.time() - t:.0f} s)", flush=True)
    results["wall_seconds"] = time.time() - t0
    results["loadavg"] = list(os.getloadavg())
    results["cpu_seconds"] = sum(
        u.ru_utime + u.ru_stime for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN)))
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    md = report.write_report(results, args.report_dir)
    print(report.headline(results))
    print(f"\nwall time {results['wall_seconds'] / 60:.1f} min, CPU time "
          f"{results['cpu_seconds'] / 60:.1f} min; report "
          f"{md}; results {os.path.join(args.out, 'results.json')}")


if __name__ == "__main__":
    main()
