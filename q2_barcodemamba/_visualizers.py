"""Visualizers: ``summarize-classifier`` and ``evaluate-classifications``.

Each writes an index.html (q2templates, Jinja2 templates in
assets/<name>/index.html), PNG plots (matplotlib) and the numbers behind
every table and plot as TSV files for download.
"""
import json
import os
from typing import List

import numpy as np
import pandas as pd
import q2templates

from . import _plots
from ._evaluation import (OUTCOMES, confusion, evaluate, n_rank_fields,
                          rank_names)
from ._formats import BarcodeMambaClassifierDirFmt
from ._summary import (abstention_overview, history_table, provenance_text,
                       region_text)
from ._version import __version__
from .core.inference import DEFAULT_CONFIDENCE
from .core.io import load_classifier, read_config
from .core.taxonomy import normalize_lineage

ASSETS = os.path.join(os.path.dirname(__file__), "assets")


def _tsv(df: pd.DataFrame, output_dir: str, name: str, index=False) -> str:
    df.to_csv(os.path.join(output_dir, name), sep="\t", index=index,
              float_format="%.6g", na_rep="NaN")
    return name


def _fmt(x, digits=4):
    """Numbers as shown on the pages (the tests read them back)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x)).lower()
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.{digits}f}"
    return str(x)


# ------------------------------------------------------- summarize-classifier
def summarize_classifier(output_dir: str,
                         classifier: BarcodeMambaClassifierDirFmt) -> None:
    path = str(classifier.path)
    cfg = read_config(path)
    cfg.pop("_writer", None)
    clf = load_classifier(path)
    summary = dict(cfg.get("summary") or {})
    labels = clf.labels
    ranks = labels.rank_names
    cal = cfg["calibration"]
    hist = history_table(summary, ranks)
    ctx = {"title": "BarcodeMamba+ classifier summary",
           "current_version": __version__,
           "written_by": cfg.get("package_version", "?"),
           "default_confidence": DEFAULT_CONFIDENCE,
           "plots": {}, "downloads": []}

    overview = [
        ("Preset", "preset", cfg.get("preset", "custom")),
        ("Parameters", "n-parameters", clf.net.num_parameters()),
        ("Written by q2-barcodemamba", "package-version",
         cfg.get("package_version", "?")),
        ("Classifier format version", "format-version",
         cfg["format_version"]),
        ("Tokenizer vocabulary (BPE tokens)", "vocab-size",
         clf.tokenizer.vocab_size),
        ("Tokens kept per read", "max-length", clf.train_config.max_length),
        ("Orientation k-mer size", "orientation-k",
         cfg.get("orientation_k", "?")),
        ("Ranks", "n-ranks", len(ranks)),
        ("Distinct reference lineages (leaf classes)", "n-leaves",
         len(labels.leaves)),
    ]
    for key, label in (("n_reference_reads", "Reference reads"),
                       ("n_train", "Training reads"),
                       ("n_validation", "Validation reads (held out)"),
                       ("best_epoch", "Best validation epoch")):
        if key in summary:
            overview.append((label, key.replace("_", "-"), summary[key]))
    backbone = summary.get("backbone")
    if isinstance(backbone, dict) and backbone:
        overview.append(("Fine-tuned from pretrained backbone", "backbone",
                         f"{backbone.get('name') or 'custom'} "
                         f"({backbone.get('preset') or '?'})"))
    if "train_seconds" in summary:
        overview.append(("Training time (s)", "train-seconds",
                         f"{float(summary['train_seconds']):.1f}"))
    overview.append(("Temperature", "temperature",
                     float(cal["temperature"])))
    if "best_confidence" in cal:
        i = cal["thresholds"].index(cal["best_confidence"])
        overview += [
            ("Confidence threshold chosen ('auto')", "best-confidence",
             float(cal["best_confidence"])),
            ("Right-call rate at the chosen threshold", "best-rate",
             float(cal["right_call_rate"][i]))]
    overview += abstention_overview(cal, clf)
    overview.append(("Query region (reads it was fitted for)",
                     "query-region", region_text(cfg["train_config"],
                                                 summary)))
    ctx["overview"] = [(k, i, _fmt(v)) for k, i, v in overview]

    classes = pd.DataFrame({"rank": ranks, "n_classes": labels.n_classes})
    ctx["classes"] = classes.to_dict("records")
    ctx["downloads"].append(_tsv(classes, output_dir, "classes-per-rank.tsv"))

    mcfg = clf.model_config.to_dict()
    mcfg.update(d_inner=clf.model_config.d_inner,
                nheads=clf.model_config.nheads)
    ctx["model_config"] = sorted((k, json.dumps(v)) for k, v in mcfg.items())
    ctx["train_config"] = sorted((k, json.dumps(v))
                                 for k, v in cfg["train_config"].items())
    pd.DataFrame(
        [("model_config", k, v) for k, v in ctx["model_config"]]
        + [("train_config", k, v) for k, v in ctx["train_config"]],
        columns=["section", "key", "value"]).pipe(
            _tsv, output_dir, "configuration.tsv")
    ctx["downloads"].append("configuration.tsv")

    if len(hist):
        ctx["downloads"].append(_tsv(hist.drop(columns="refit"), output_dir,
                                     "training-history.tsv"))
        ctx["plots"]["training"] = _plots.training_curves(
            hist, summary.get("best_epoch"), output_dir)
        if hist[[f"val_accuracy_{r}" for r in ranks]].notna().any().any():
            ctx["plots"]["val_accuracy"] = _plots.validation_accuracy(
                hist, ranks, output_dir)
        show = hist.drop(columns="refit")
        ctx["history_columns"] = list(show.columns)
        ctx["history"] = [[_fmt(v) for v in row]
                          for row in show.itertuples(index=False)]
    if "right_call_rate" in cal:
        curve = pd.DataFrame({"threshold": cal["thresholds"],
                              "right_call_rate": cal["right_call_rate"]})
        ctx["downloads"].append(_tsv(curve, output_dir, "calibration.tsv"))
        ctx["plots"]["calibration"] = _plots.calibration_curve(
            cal["thresholds"], cal["right_call_rate"],
            cal["best_confidence"], output_dir)
        ctx["calibration"] = [(_fmt(t, 2), _fmt(r)) for t, r in
                              zip(cal["thresholds"], cal["right_call_rate"])]
    text = provenance_text(cfg, clf, summary)
    with open(os.path.join(output_dir, "classifier-summary.txt"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(output_dir, "classifier-config.json"), "w") as fh:
        json.dump({k: v for k, v in cfg.items() if k != "summary"}, fh,
                  indent=1)
    ctx["downloads"] += ["classifier-summary.txt", "classifier-config.json"]
    ctx["provenance_text"] = text
    q2templates.render(os.path.join(ASSETS, "summarize_classifier",
                                    "index.html"), output_dir, context=ctx)


# --------------------------------------------------- evaluate-classifications
def _labels(labels, n: int) -> List[str]:
    if not labels:
        return [f"classification-{i + 1}" for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels were given for {n} "
                         "classifications; give one label per "
                         "classification, in the same order.")
    if len(set(labels)) != n:
        raise ValueError(f"The labels {labels} are not unique; give each "
                         "classification its own label.")
    return list(labels)


def _common_ranks(classifications, expected: pd.Series):
    """Number and names of ranks shared by all classifications."""
    ids = pd.Index([])
    preds = []
    for df in classifications:
        ids = ids.union(df.index.intersection(expected.index))
        preds += list(df["Taxon"])
    exp = list(expected.loc[ids])
    n = max(n_rank_fields(exp), n_rank_fields(preds), 1)
    return n, rank_names([normalize_lineage(t) for t in exp], n)


def evaluate_classifications(output_dir: str,
                             classifications: pd.DataFrame,
                             expected_taxonomy: pd.Series,
                             labels: list = None,
                             confusion_rank: str = "genus",
                             top_n: int = 15, n_bins: int = 10) -> None:
    labels = _labels(labels, len(classifications))
    expected_taxonomy = expected_taxonomy.astype(object)
    for df, label in zip(classifications, labels):
        if df.index.duplicated().any():
            raise ValueError(f"The classification {label!r} lists some read "
                             "ids more than once.")
    n_ranks, names = _common_ranks(classifications, expected_taxonomy)
    notes = []
    if confusion_rank not in names:
        if confusion_rank != "genus":
            raise ValueError(f"confusion_rank {confusion_rank!r} is not a "
                             f"rank of this taxonomy; choose one of {names}.")
        notes.append(f"The taxonomy has no genus rank; the confusion tables "
                     f"use the deepest rank, {names[-1]}.")
        confusion_rank = names[-1]
    c_rank = names.index(confusion_rank)
    results = [evaluate(df, expected_taxonomy, label, n_ranks, names, n_bins)
               for df, label in zip(classifications, labels)]
    read_sets = {frozenset(df.index) for df in classifications}
    if len(read_sets) > 1:
        shared = frozenset.intersection(*read_sets)
        notes.append(f"The classifications cover different reads "
                     f"({len(shared):,} shared); each is scored on its own "
                     "reads.")
    for res in results:
        if not res["has_confidence"]:
            notes.append(f"{res['label']!r} has no usable Confidence values "
                         "(missing, 'disable'd or outside [0, 1]); it has no "
                         "reliability diagram or threshold curve.")

    def stack(key):
        frames = [res[key].assign(classification=res["label"])
                  for res in results if res[key] is not None]
        if not frames:
            return None
        df = pd.concat(frames, ignore_index=True)
        return df[["classification"] + [c for c in df.columns
                                        if c != "classification"]]

    summary = pd.DataFrame([{
        "classification": r["label"], "n_reads": r["n_reads"],
        "n_unassigned": r["n_unassigned"],
        "n_with_confidence": r["n_with_confidence"],
        "deepest_call_accuracy": r["deepest_call_accuracy"],
        f"{confusion_rank}_accuracy":
            r["rank_metrics"]["accuracy"].iloc[c_rank],
        "expected_calibration_error": r["ece"]} for r in results])
    downloads = [_tsv(summary, output_dir, "summary.tsv"),
                 _tsv(stack("rank_metrics"), output_dir, "rank-metrics.tsv")]
    rel, thr = stack("reliability"), stack("thresholds")
    plots = {"ranks": _plots.rank_rates(results, output_dir)}
    if rel is not None:
        downloads.append(_tsv(rel, output_dir, "reliability.tsv"))
        downloads.append(_tsv(thr, output_dir, "confidence-thresholds.tsv"))
        plots["reliability"] = _plots.reliability_diagram(results, output_dir)
        plots["thresholds"] = _plots.threshold_plot(results, output_dir)
    per_read = pd.concat([r["per_read"].assign(classification=r["label"])
                          for r in results])
    downloads.append(_tsv(per_read, output_dir, "per-read.tsv", index=True))

    sections = []
    for k, res in enumerate(results, start=1):
        table = confusion(res["expected"], res["predicted"], c_rank, top_n)
        conf_tsv = _tsv(table, output_dir, f"confusion-{k}.tsv", index=True)
        conf_png = _plots.confusion_heatmap(
            table, f"{res['label']}: {confusion_rank}", output_dir,
            f"confusion-{k}.png")
        m = res["rank_metrics"]
        sections.append({
            "k": k, "label": res["label"],
            "facts": [("Reads", "n-reads", _fmt(res["n_reads"])),
                      ("Unassigned reads", "n-unassigned",
                       _fmt(res["n_unassigned"])),
                      ("Reads with a usable confidence", "n-with-confidence",
                       _fmt(res["n_with_confidence"])),
                      ("Accuracy at the deepest predicted rank (assigned "
                       "reads)", "deepest-accuracy",
                       _fmt(res["deepest_call_accuracy"])),
                      ("Expected calibration error", "ece",
                       _fmt(res["ece"]))],
            "ranks": [{"rank": row["rank"],
                       "n_known": _fmt(row["n_expected_known"]),
                       **{o: _fmt(row[o]) for o in OUTCOMES},
                       "accuracy": _fmt(row["accuracy"]),
                       "misclassified_rate": _fmt(row["misclassified_rate"]),
                       "under_call_rate": _fmt(row["under_call_rate"]),
                       "over_call_rate": _fmt(row["over_call_rate"])}
                      for _, row in m.iterrows()],
            "reliability": (None if res["reliability"] is None else [
                (_fmt(b.bin_lower, 1), _fmt(b.bin_upper, 1), _fmt(b.n_reads),
                 _fmt(b.mean_confidence), _fmt(b.accuracy))
                for b in res["reliability"].itertuples()]),
            "thresholds": (None if res["thresholds"] is None else [
                (_fmt(t.threshold, 2), _fmt(t.n_retained),
                 _fmt(t.retained_share), _fmt(t.accuracy))
                for t in res["thresholds"].itertuples()]),
            "confusion_tsv": conf_tsv, "confusion_png": conf_png})
        downloads.append(conf_tsv)
    ctx = {"title": "Taxonomy classification evaluation", "notes": notes,
           "labels": labels, "names": names, "confusion_rank": confusion_rank,
           "top_n": top_n, "n_bins": n_bins, "plots": plots,
           "sections": sections, "downloads": downloads,
           "summary": [[_fmt(v) for v in row]
                       for row in summary.itertuples(index=False)],
           "summary_columns": list(summary.columns)}
    q2templates.render(os.path.join(ASSETS, "evaluate_classifications",
                                    "index.html"), output_dir, context=ctx)
