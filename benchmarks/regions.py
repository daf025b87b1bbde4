"""Real amplicons from a full-ITS reference (issue 14's benchmark).

    .venv/bin/python -m benchmarks.regions [--out DIR] [--datasets A,B]

Reference: full-ITS reads (the standard split of benchmarks/splits.py).
Queries: the held-out reads of that split given as (a) full ITS, (b) the
ITS1 amplicon (ITS1-ITS2) and (c) the ITS2 amplicon (fITS7-ITS4) cut from
them by primer-site search (q2_barcodemamba/core/primers.py; a read where
the 5.8S site is not found is left out of that query set, an outer site
that is not in the read leaves the read's end), and (d) full ITS with
simulated long-read errors (2 % and 5 % per base: half substitutions, a
quarter insertions, a quarter deletions; seeded). Every method runs through
the QIIME 2 CLI: barcodemamba as shipped (region-robust), with error-varied
copies of the validation queries (``--p-validation-errors 0.05``), with the
settings for long reads (those copies, no amplicons), and without the
region training (``--p-no-region-cutouts --p-region-augment 0``, the 0.2.0
behaviour); classify-sklearn fitted on the full reference (QIIME's advice
for UNITE) and on ``extract-reads`` output for the query's primer pair,
vsearch top hit and consensus. The same classifier artifact serves every
query set. Results are kept in ``--out`` (a rerun skips finished steps);
the report replaces the region section of docs/benchmarks.md.
"""
import argparse
import json
import os
import time

import numpy as np

from q2_barcodemamba.core.augment import with_errors
from q2_barcodemamba.core.data import read_fasta
from q2_barcodemamba.core.primers import PRIMERS, amplicon, parse_region

from . import metrics
from .qiime_cli import REPO, Runner, check_tools, find_qiime, \
    read_classification
from .run import DEFAULT_DATA, MODES, PER_TAXON, _sizes, data_files
from .splits import read_taxonomy, read_truth, write_split

SIZES = {"its_full_cbs_yeasts": MODES["full"]["datasets"][
             "its_full_cbs_yeasts"],
         # ~1 read per species: mostly held-out species and genera whose
         # genus / family stays in the reference
         "its_full_unite_insd": _sizes((60, 200, 120), (30, 100, 60))}
PAIRS = {"its1": ("ITS1", "ITS2"), "its2": ("fITS7", "ITS4")}
QUERIES = ("full", "its1", "its2", "err2", "err5")
LABELS = {"full": "(a) full ITS", "its1": "(b) ITS1 amplicon (ITS1-ITS2)",
          "its2": "(c) ITS2 amplicon (fITS7-ITS4)",
          "err2": "(d) full ITS, 2 % errors",
          "err5": "(d) full ITS, 5 % errors"}
REPORT = os.path.join(REPO, "docs", "benchmarks.md")
START, END = "<!-- regions:start -->", "<!-- regions:end -->"


def write_queries(ds_dir: str, seed: int) -> dict:
    """split/test.fasta as the five query sets (FASTA in queries/)."""
    reads = list(read_fasta(os.path.join(ds_dir, "split", "test.fasta")))
    out, counts = os.path.join(ds_dir, "queries"), {}
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    for q in QUERIES:
        if q == "full":
            kept = reads
        elif q in PAIRS:
            pair = parse_region("-".join(PAIRS[q]))
            kept = [(i, a) for i, s in reads
                    if (a := amplicon(s, pair)) is not None]
        else:
            rate = int(q[3:]) / 100
            kept = [(i, with_errors(s, rate, rng, 20)) for i, s in reads]
        with open(os.path.join(out, f"{q}.fasta"), "w") as fh:
            fh.writelines(f">{i}\n{s}\n" for i, s in kept)
        counts[q] = {"n": len(kept), "median_length": float(
            np.median([len(s) for _, s in kept]))}
    return counts


def methods():
    """name -> (fit args or None, classify args builder, query sets)."""
    ref, tax = "qza/reference.qza", "qza/reference-taxonomy.qza"

    def bm_fit(extra):
        return lambda d: ["barcodemamba", "fit-classifier",
                          "--i-reference-reads", ref,
                          "--i-reference-taxonomy", tax, *extra,
                          "--o-classifier", f"{d}/classifier.qza"]

    def bm_classify(q, out, d):
        return ["barcodemamba", "classify", "--i-reads", q,
                "--i-classifier", f"{d}/classifier.qza",
                "--o-classification", out]

    def nb_fit(reads):
        return lambda d: ["feature-classifier", "fit-classifier-naive-bayes",
                          "--i-reference-reads", reads,
                          "--i-reference-taxonomy", tax,
                          "--o-classifier", f"{d}/classifier.qza"]

    def nb_classify(q, out, d):
        return ["feature-classifier", "classify-sklearn", "--i-reads", q,
                "--i-classifier", f"{d}/classifier.qza",
                "--o-classification", out]

    def vsearch(extra):
        return lambda q, out, d: [
            "feature-classifier", "classify-consensus-vsearch", "--i-query",
            q, "--i-reference-reads", ref, "--i-reference-taxonomy", tax,
            *extra, "--o-classification", out, "--o-search-results",
            out.replace(".qza", "-hits.qza")]

    return {
        "barcodemamba": (bm_fit([]), bm_classify, QUERIES),
        "barcodemamba-error-copies": (
            bm_fit(["--p-validation-errors", "0.05"]), bm_classify, QUERIES),
        "barcodemamba-long-reads": (
            bm_fit(["--p-no-region-cutouts", "--p-region-augment", "0",
                    "--p-validation-errors", "0.05"]), bm_classify, QUERIES),
        "barcodemamba-region-unaware": (
            bm_fit(["--p-no-region-cutouts", "--p-region-augment", "0"]),
            bm_classify, QUERIES),
        "naive-bayes": (nb_fit(ref), nb_classify, QUERIES),
        "naive-bayes-extract-its1": (nb_fit("qza/reference-its1.qza"),
                                     nb_classify, ("its1",)),
        "naive-bayes-extract-its2": (nb_fit("qza/reference-its2.qza"),
                                     nb_classify, ("its2",)),
        "vsearch-top-hit": (None, vsearch(["--p-maxaccepts", "1"]), QUERIES),
        "vsearch": (None, vsearch([]), QUERIES),
    }


def run_dataset(name: str, args, qiime: str) -> dict:
    fasta, tax = data_files(args.data_dir, name)
    ds_dir = os.path.join(args.out, name)
    split = write_split(os.path.join(ds_dir, "split"), name, fasta, tax,
                        SIZES[name], PER_TAXON, args.seed)
    counts = write_queries(ds_dir, args.seed)
    print(f"[{name}] reference {split['n_reference']}; queries "
          + ", ".join(f"{q} {c['n']}" for q, c in counts.items()),
          flush=True)
    log = []
    run = Runner(qiime, ds_dir, log)
    os.makedirs(os.path.join(ds_dir, "qza"), exist_ok=True)
    run.import_fasta("split/reference.fasta", "qza/reference.qza")
    run.import_taxonomy("split/reference-taxonomy.tsv",
                        "qza/reference-taxonomy.qza")
    for q in QUERIES:
        run.import_fasta(f"queries/{q}.fasta", f"qza/{q}.qza")
    for q, (f, r) in PAIRS.items():
        if not os.path.exists(os.path.join(ds_dir, f"qza/reference-{q}.qza")):
            run("feature-classifier", "extract-reads", "--i-sequences",
                "qza/reference.qza", "--p-f-primer", PRIMERS[f],
                "--p-r-primer", PRIMERS[r], "--o-reads",
                f"qza/reference-{q}.qza")
    prefixes = metrics.reference_prefixes(read_taxonomy(
        os.path.join(ds_dir, "split", "reference-taxonomy.tsv")))
    truth_all = read_truth(os.path.join(ds_dir, "split", "test-truth.tsv"))
    results = {}
    for m, (fit, classify, queries) in methods().items():
        if args.methods and m not in args.methods:
            continue
        results[m] = run_method(ds_dir, run, m, fit, classify, queries,
                                truth_all, prefixes)
        print(f"[{name}] {m}: " + ", ".join(
            f"{q} {r['metrics']['right_call']:.1f}"
            for q, r in results[m]["queries"].items()), flush=True)
    return {"split": split, "queries": counts, "methods": results}


def run_method(ds_dir, run, m, fit, classify, queries, truth_all,
               prefixes) -> dict:
    d = f"methods/{m}"
    path = os.path.join(ds_dir, d, "result.json")
    res = {}
    if os.path.exists(path):
        with open(path) as fh:
            res = json.load(fh)
    os.makedirs(os.path.join(ds_dir, d), exist_ok=True)
    if fit is not None and "fit" not in res:
        res["fit"] = run(*fit(d))
    res.setdefault("queries", {})
    for q in queries:
        if q in res["queries"]:
            continue
        out = f"{d}/{q}.qza"
        stats = run(*classify(f"qza/{q}.qza", out, d))
        calls = {k: v[0] for k, v in read_classification(
            os.path.join(ds_dir, out)).items()}
        ids = [i for i, _ in read_fasta(
            os.path.join(ds_dir, "queries", f"{q}.fasta"))]
        truth = metrics.Truth({i: truth_all[i] for i in ids}, prefixes)
        res["queries"][q] = {
            "classify": stats, "metrics": metrics.evaluate(truth, calls),
            "reads_per_second": len(ids) / stats["seconds"]}
        with open(path, "w") as fh:
            json.dump(res, fh, indent=1)
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1)
    return res


# ------------------------------------------------------------------ report
METRICS = (("right_call", "right call"),
           ("seen_species_accuracy", "seen species"),
           ("unseen_species_genus_accuracy", "unseen-sp. genus"),
           ("unseen_species_overcall", "unseen-sp. over-call"),
           ("unseen_genus_family_accuracy", "unseen-gen. family"),
           ("rank_accuracy.family", "family (all queries, right at the "
            "rank as defined above)"),
           ("rank_accuracy.genus", "genus (all queries)"),
           ("rank_accuracy.species", "species (all queries)"))


def _metric(m: dict, key: str) -> float:
    for part in key.split("."):
        m = m[part]
    return m
NAMES = {"barcodemamba": "barcodemamba (region-robust, default)",
         "barcodemamba-error-copies": "barcodemamba, validation with "
                                      "error copies (--p-validation-errors "
                                      "0.05)",
         "barcodemamba-long-reads": "barcodemamba, long-read settings (no "
                                    "amplicons, error copies)",
         "barcodemamba-region-unaware": "barcodemamba, region-unaware "
                                        "(0.2.0)",
         "naive-bayes": "classify-sklearn, full reference",
         "naive-bayes-extract-its1": "classify-sklearn, extract-reads "
                                     "ITS1-ITS2",
         "naive-bayes-extract-its2": "classify-sklearn, extract-reads "
                                     "fITS7-ITS4",
         "vsearch-top-hit": "vsearch top hit",
         "vsearch": "vsearch consensus"}


def report(results: dict) -> str:
    lines = [START, "", "## Amplicons and long reads from a full-ITS "
             "reference", "",
             "One command: `.venv/bin/python -m benchmarks.regions` "
             "(`benchmarks/regions.py`; what it does is in its docstring). "
             "Percent of queries; *right call* = right at the deepest rank "
             "the reference can know, no deeper (as in the tables above; a "
             "rank is right when it names the true taxon where the "
             "reference knows it, and asserts nothing where it does not). "
             "Reads/s include each command's start-up. Calibration (ECE) "
             "is not computed for these query sets.", ""]
    for name, ds in results["datasets"].items():
        lines += [f"### {name}", "",
                  f"Reference {ds['split']['n_reference']} full-ITS reads; "
                  "queries: " + ", ".join(
                      f"{LABELS[q]} {c['n']} (median {c['median_length']:.0f}"
                      " bp)" for q, c in ds["queries"].items()) + ".", ""]
        for key, label in METRICS:
            lines += [f"**{label}**", "",
                      "| method | " + " | ".join(LABELS[q] for q in QUERIES)
                      + " |", "|---" * (len(QUERIES) + 1) + "|"]
            for m, r in ds["methods"].items():
                cells = [f"{_metric(r['queries'][q]['metrics'], key):.1f}"
                         if q in r["queries"] else "" for q in QUERIES]
                lines.append(f"| {NAMES[m]} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += ["**fit and speed**", "",
                  "| method | fit (s) | fit peak RSS (MiB) | classify "
                  "reads/s (full ITS) |", "|---|---|---|---|"]
        for m, r in ds["methods"].items():
            fit = r.get("fit")
            full = r["queries"].get("full") or next(iter(
                r["queries"].values()))
            lines.append(
                f"| {NAMES[m]} | {fit['seconds']:.0f} | "
                f"{fit['peak_rss_mib']:.0f} | " if fit else
                f"| {NAMES[m]} | - | - | ")
            lines[-1] += f"{full['reads_per_second']:.0f} |"
        lines.append("")
    discussion = os.path.join(REPO, "benchmarks", "regions_discussion.md")
    if os.path.exists(discussion):
        with open(discussion) as fh:
            lines += [fh.read().strip(), ""]
    lines.append(END)
    return "\n".join(lines)


def write_report(results: dict, path: str = REPORT) -> None:
    text = report(results)
    doc = ""
    if os.path.exists(path):
        with open(path) as fh:
            doc = fh.read()
    if START in doc:
        doc = doc[:doc.index(START)] + text + doc[doc.index(END)
                                                  + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    with open(path, "w") as fh:
        fh.write(doc)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.regions",
                                 description=__doc__,
                                 formatter_class=argparse.
                                 RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks",
                                                  "results", "regions"))
    ap.add_argument("--data-dir", default=DEFAULT_DATA)
    ap.add_argument("--datasets", default=",".join(SIZES))
    ap.add_argument("--methods", default="",
                    help="only these methods (comma-separated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", default=REPORT)
    args = ap.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    check_tools()
    qiime = find_qiime()
    t0 = time.time()
    results = {"seed": args.seed, "datasets": {}}
    path = os.path.join(args.out, "results.json")
    if os.path.exists(path):      # data sets of earlier runs stay reported
        with open(path) as fh:
            results["datasets"] = json.load(fh).get("datasets", {})
    for name in args.datasets.split(","):
        results["datasets"][name] = run_dataset(name, args, qiime)
    results["wall_seconds"] = time.time() - t0
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)
    write_report(results, args.report)
    print(f"wall time {results['wall_seconds'] / 60:.1f} min; report "
          f"{args.report}")


if __name__ == "__main__":
    main()
