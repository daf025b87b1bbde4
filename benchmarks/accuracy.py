"""Ablation of the accuracy parts of the default classifier (issue 13).

    python -m benchmarks.accuracy --bench-dir benchmarks/results/full \\
        --datasets its_full_cbs_yeasts,its2_cbs [--seeds 0,1,2] \\
        [--variants default,no-contrastive,...] [--threads 1]

Runs on the splits that ``python -m benchmarks.run --full`` wrote
(``<bench-dir>/<dataset>/split``: reference, test and validation queries,
never overlapping haplotypes), fits each variant in-process with the
QIIME-free core and scores the test queries with the benchmark's metrics
(right call at the classifier's own ``auto`` threshold, seen-species
accuracy, unseen species: genus accuracy and species over-call, unseen
genera: family accuracy, species-level ECE). The default at seed 0 is the
classifier that ``benchmarks.run`` fitted through the QIIME 2 CLI when it is
there. Results go to ``<bench-dir>/<dataset>/accuracy/<variant>-s<seed>.json``
(finished ones are skipped, so the command resumes) and the table to
``docs/accuracy.md`` (``--report``).

Two kinds of variants:

* refitted: the network is trained again with one part changed
  (``no-memory``: no reference memory, the network alone with the learned
  calibrator on its summed probability, the epoch chosen by its own right
  calls; ``no-contrastive``; ``select-val-loss``; ``augment``;
  ``val-0.2``: the validation split doubled; ``refit``: the network
  trained again on all reads for the chosen epoch count; ``fresh``: the
  default fitted again, for a baseline of today's code where the saved
  default network is older);
* recalibrated: the default network (same seed) with one part of what is
  built after training turned off (``no-kmer``: embedding neighbours only;
  ``summed``: the mixture's summed probability as the confidence, no
  calibrator; ``learned``: the per-rank calibrator always; ``auto``: the
  one of the two with more right calls on the fit's validation split;
  ``no-cutouts``: memory and validation without the ITS1/ITS2 amplicons
  cut from the reference reads).
  The epoch of those networks was still chosen with the whole classifier,
  so they isolate what each part adds at classify time;
* classify-time query mixes: ``novel-<species>[-<genera>]`` classifies
  with ``novel_species``/``novel_genera`` set (e.g. ``novel-0.8``,
  ``novel-0.8-0.3``), ``novel-true`` with the shares of the split's own
  test queries (what a user who knew them would set).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import TrainConfig
from q2_barcodemamba.core.data import read_fasta

from . import metrics
from .splits import read_taxonomy, read_truth

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFIT = {"default": {}, "no-memory": {"memory": False},
         "no-contrastive": {"contrastive_weight": 0.0},
         "select-val-loss": {"select": "val_loss"},
         "augment": {"augment": 0.5},
         "val-0.2": {"validation_fraction": 0.2,
                     "unseen_genus_fraction": 0.06},
         "refit": {"refit": True},
         "fresh": {}}
RECAL = {"no-kmer": {"kmer_similarity": False},
         "summed": {"abstention": "summed"},
         "learned": {"abstention": "learned"},
         "auto": {"abstention": "auto"},
         "no-cutouts": {"region_cutouts": False}}
LABELS = {
    "default": "default (all parts on)",
    "no-contrastive": "no contrastive term (refit)",
    "select-val-loss": "epoch by validation loss, not right calls (refit)",
    "augment": "with augmentation, 50 % of reads varied (refit)",
    "val-0.2": "validation split doubled: 20 % of reads, 6 % held-out "
               "genera (refit)",
    "fresh": "default, fitted again by this harness with today's code "
             "(refit)",
    "refit": "network retrained on all reads (validation included) for "
             "the chosen epoch count, calibration of the first (refit)",
    "no-memory": "no reference memory: network + learned abstention, epoch "
                 "by the network's own right calls (refit)",
    "no-kmer": "memory without k-mer similarity (same network)",
    "summed": "summed probability as confidence, no calibrator "
              "(same network)",
    "learned": "learned calibrator as confidence, always (same network)",
    "auto": "calibrator or summed probability, whichever validation "
            "prefers (same network)",
}
SCORES = ("right_call", "seen_species_accuracy",
          "unseen_species_genus_accuracy", "unseen_species_overcall",
          "unseen_genus_family_accuracy")


def load_split(ds_dir: str):
    split = os.path.join(ds_dir, "split")
    recs = list(read_fasta(os.path.join(split, "reference.fasta")))
    tax = read_taxonomy(os.path.join(split, "reference-taxonomy.tsv"))
    return [r[0] for r in recs], [r[1] for r in recs], tax


def score(clf: TaxonomicClassifier, ds_dir: str, part: str = "test",
          ranks=None, calibration=None) -> dict:
    """The benchmark's scores of ``clf`` on the split's ``part`` queries;
    ``ranks``: what computes the per-rank calls of a list of reads
    (default ``clf.predict_ranks``); ``calibration``: the one whose
    threshold applies (default ``clf.calibration``)."""
    split = os.path.join(ds_dir, "split")
    prefixes = metrics.reference_prefixes(read_taxonomy(
        os.path.join(split, "reference-taxonomy.tsv")))
    truth = metrics.Truth(read_truth(os.path.join(split, f"{part}-truth.tsv")),
                          prefixes)
    reads = dict(read_fasta(os.path.join(split, f"{part}.fasta")))
    seqs = [reads[i] for i in truth.ids]
    t = time.time()
    chosen, conf = (ranks or clf.predict_ranks)(seqs)
    secs = time.time() - t
    labels = [[clf.labels.classes[r][c] if c >= 0 else None
               for r, c in enumerate(row)] for row in chosen]
    thr = float((calibration or clf.calibration).get("best_confidence", 0.7))
    m = metrics.evaluate(truth, dict(zip(truth.ids, metrics.calls_at(
        labels, conf, thr))))
    out = {k: m[k] for k in SCORES}
    out["rank_accuracy"] = m["rank_accuracy"]
    out["ece"] = metrics.calibration_error(truth, labels, conf,
                                           truth.ids)["ece"]
    out.update(threshold=thr, reads_per_second=len(seqs) / max(secs, 1e-9),
               n_queries=len(seqs))
    return out


def recalibrate(clf: TaxonomicClassifier, ids, seqs, tax, **overrides
                ) -> TaxonomicClassifier:
    """``clf``'s network with the calibration and memory of a classifier
    fitted with ``overrides`` (same split, same seed). The reads go through
    the steps of ``TaxonomicClassifier.fit`` themselves (``_reference``,
    ``_split``, ``_validation``, ``_memory``), so the two cannot drift:
    until 2026-12-03 this function had its own copy, which left out the
    ITS1/ITS2 amplicons that memory and validation add."""
    out = TaxonomicClassifier(clf.preset_name, clf.model_config,
                              replace(clf.train_config, **overrides))
    out.tokenizer, out.labels, out.net = clf.tokenizer, clf.labels, clf.net
    out.orienter, out.summary = clf.orienter, clf.summary
    quiet = (lambda m: None)
    seqs, lineages = out._reference(ids, seqs, tax, quiet)
    train_idx, val_idx = out._split(seqs, lineages,
                                    len(clf.labels.rank_names), quiet)
    y, rows, val = out._validation(seqs, lineages, train_idx, val_idx,
                                   quiet)
    z, _ = out._embed_all(out.tokenizer.encode(
        rows.seqs, out.train_config.max_length), logits=False)
    out.calibration = val.calibrate(out.net, z, quiet)
    out.evidence = val.evidence or None
    out.memory = out._memory(z, rows, y)
    return out


def artifact_mib(clf: TaxonomicClassifier) -> float:
    from q2_barcodemamba.core.io import save_classifier
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c")
        save_classifier(clf, path)
        size = sum(os.path.getsize(os.path.join(path, f))
                   for f in os.listdir(path))
    return size / 2 ** 20


def default_classifier(ds_dir, ids, seqs, tax, seed, threads, cache):
    key = ("default", seed)
    if key in cache:
        return cache[key], None
    from q2_barcodemamba.core.io import load_classifier, save_classifier
    qza = os.path.join(ds_dir, "methods", "barcodemamba", "classifier.qza")
    # the default network of each seed is kept, so that recalibrated
    # variants asked for later need no refit
    kept = os.path.join(ds_dir, "accuracy", f"default-s{seed}.classifier")
    if seed == 0 and os.path.exists(qza):
        import qiime2
        clf = qiime2.Artifact.load(qza).view(TaxonomicClassifier)
        fit_s = clf.summary.get("train_seconds")
    elif os.path.isdir(kept):
        clf = load_classifier(kept)
        fit_s = clf.summary.get("train_seconds")
    else:
        clf, fit_s = fit(ids, seqs, tax, seed, threads, {})
        save_classifier(clf, kept)
    cache[key] = clf
    return clf, fit_s


def fit(ids, seqs, tax, seed, threads, overrides):
    from q2_barcodemamba.core.backbones import shipped_backbone
    tc = TrainConfig(random_seed=seed, n_threads=threads, **overrides)
    t = time.time()
    clf = TaxonomicClassifier("tiny", train_config=tc).fit(
        ids, seqs, tax, backbone=shipped_backbone(),
        progress=lambda m: print(m, file=sys.stderr, flush=True))
    return clf, time.time() - t


def novel_mix(variant: str, ds_dir: str):
    """(novel_species, novel_genera) of a classify-time variant
    ``novel-<species share>[-<genus share>]``, or ``novel-true``: the
    shares of the split's test queries (what a user who knew them would
    set)."""
    spec = variant[len("novel-"):]
    if spec == "true":
        cats = [c for _, c in read_truth(os.path.join(
            ds_dir, "split", "test-truth.tsv")).values()]
        genera = cats.count("unseen_genus") / len(cats)
        return cats.count("unseen_species") / len(cats) + genera, genera
    parts = [float(x) for x in spec.split("-")]
    return parts[0], (parts[1] if len(parts) > 1 else None)


def run_novel(ds_dir, variant, seed, threads, data, cache) -> dict:
    """The default network and calibration of ``seed`` classifying the
    test queries with the query mix of ``variant`` (:func:`novel_mix`).
    A default network saved before format 3 is recalibrated as fitted
    (same calibration) to get its validation evidence."""
    ids, seqs, tax = data
    base, _ = default_classifier(ds_dir, ids, seqs, tax, seed, threads,
                                 cache)
    if base.evidence is None:
        key = ("evidence", seed)
        if key not in cache:
            cache[key] = recalibrate(base, ids, seqs, tax)
        base = cache[key]
    ns, ng = novel_mix(variant, ds_dir)
    cal = base.calibration_for(ns, ng)
    return {"variant": variant, "seed": seed, "fit_seconds": None,
            "novel_species": ns, "novel_genera": ng,
            "best_epoch": base.summary.get("best_epoch"),
            "calibration": {k: cal.get(k) for k in (
                "mixture", "best_confidence", "temperature", "score",
                "abstention", "scores")},
            "artifact_mib": None,
            "test": score(base, ds_dir, "test", ranks=lambda r: (
                base.predict_ranks(r, novel_species=ns, novel_genera=ng)),
                calibration=cal)}


def run_variant(ds_dir, variant, seed, threads, data, cache) -> dict:
    ids, seqs, tax = data
    if variant.startswith("novel-"):
        return run_novel(ds_dir, variant, seed, threads, data, cache)
    if variant in RECAL:
        base, _ = default_classifier(ds_dir, ids, seqs, tax, seed, threads,
                                     cache)
        clf, fit_s = recalibrate(base, ids, seqs, tax, **RECAL[variant]), None
    elif variant == "default":
        clf, fit_s = default_classifier(ds_dir, ids, seqs, tax, seed,
                                        threads, cache)
    else:
        clf, fit_s = fit(ids, seqs, tax, seed, threads, REFIT[variant])
    res = {"variant": variant, "seed": seed, "fit_seconds": fit_s,
           "best_epoch": clf.summary.get("best_epoch"),
           "calibration": {k: clf.calibration.get(k) for k in (
               "mixture", "best_confidence", "temperature", "score",
               "abstention", "scores")},
           "artifact_mib": artifact_mib(clf),
           "test": score(clf, ds_dir, "test")}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.accuracy",
                                 description=__doc__,
                                 formatter_class=argparse.
                                 RawDescriptionHelpFormatter)
    ap.add_argument("--bench-dir", default=os.path.join(
        REPO, "benchmarks", "results", "full"))
    ap.add_argument("--datasets", default="its_full_cbs_yeasts")
    ap.add_argument("--variants", default=",".join(list(REFIT) + list(RECAL)))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", help="write the Markdown table here")
    args = ap.parse_args(argv)
    for name in args.datasets.split(","):
        ds_dir = os.path.join(args.bench_dir, name)
        out_dir = os.path.join(ds_dir, "accuracy")
        os.makedirs(out_dir, exist_ok=True)
        data, cache = load_split(ds_dir), {}
        for seed in [int(s) for s in args.seeds.split(",")]:
            for variant in args.variants.split(","):
                path = os.path.join(out_dir, f"{variant}-s{seed}.json")
                if os.path.exists(path):
                    continue
                t = time.time()
                res = run_variant(ds_dir, variant, seed, args.threads, data,
                                  cache)
                with open(path, "w") as fh:
                    json.dump(res, fh, indent=1)
                print(f"[{name}] {variant} seed {seed}: right call "
                      f"{res['test']['right_call']:.1f} "
                      f"({time.time() - t:.0f} s)", flush=True)
    if args.report:
        from .accuracy_report import write
        write(args.bench_dir, args.report)


if __name__ == "__main__":
    main()
