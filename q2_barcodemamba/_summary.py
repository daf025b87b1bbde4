"""Tables and text of the ``summarize-classifier`` page
(:func:`._visualizers.summarize_classifier`): training history,
provenance, region and abstention."""
from typing import List

import numpy as np
import pandas as pd

from .core.inference import DEFAULT_CONFIDENCE
from .core.novelty import validation_shares


def history_table(summary: dict, rank_names_: List[str]) -> pd.DataFrame:
    """One row per training epoch: run ('fit' or 'refit'), losses, the
    validation right-call rate that selects the epoch, learning rate, speed
    and validation accuracy per rank (NaN where absent)."""
    rows = []
    for h in summary.get("history", []):
        row = {"run": "refit" if h.get("refit") else "fit",
               "epoch": h["epoch"], "train_loss": h.get("train_loss"),
               "val_loss": h.get("val_loss", np.nan),
               "val_right_call": h.get("right_call", np.nan),
               "learning_rate": h.get("lr"),
               "reads_per_second": h.get("seq_per_s"),
               "best_so_far": bool(h.get("best", False))}
        acc = h.get("val_accuracy", {})
        for r in rank_names_:
            row[f"val_accuracy_{r}"] = acc.get(r, np.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df["refit"] = df["run"] == "refit"
        df = df.astype({c: float for c in df.columns if c.startswith("val_")})
    return df


def provenance_text(cfg: dict, clf, summary: dict) -> str:
    """A short plain-text description of the classifier for methods
    sections and lab notebooks."""
    tc, cal = cfg["train_config"], cfg["calibration"]
    n_par = summary.get("n_parameters") or clf.net.num_parameters()
    ranks = ", ".join(f"{r} {n}" for r, n in
                      zip(clf.labels.rank_names, clf.labels.n_classes))
    lines = [
        f"BarcodeMamba+ classifier (q2-barcodemamba "
        f"{cfg.get('package_version', '?')}, classifier format "
        f"{cfg['format_version']}), preset '{cfg.get('preset', 'custom')}' "
        f"with {n_par:,} parameters (d_model "
        f"{cfg['model_config']['d_model']}, {cfg['model_config']['n_layers']}"
        f" Mamba-2 layers), BPE vocabulary of "
        f"{cfg['model_config']['vocab_size']} tokens, reads cut to "
        f"{tc['max_length']} tokens.",
    ]
    if summary:
        lines.append(
            f"Trained on {summary.get('n_reference_reads', '?'):,} reference "
            f"reads ({summary.get('n_train', '?'):,} for training, "
            f"{summary.get('n_validation', '?'):,} held out for validation) "
            f"of {len(clf.labels.leaves):,} distinct lineages; classes per "
            f"rank: {ranks}.")
        refit = ("then refit on all reads for that many epochs"
                 if tc.get("refit") and summary.get("n_validation") else
                 "no refit")
        lines.append(
            f"Up to {tc['epochs']} epochs, batch size {tc['batch_size']}, "
            f"peak learning rate {tc.get('learning_rate')}, seed "
            f"{tc['random_seed']}; best validation epoch "
            f"{summary.get('best_epoch', '?')}, {refit}.")
    if "best_confidence" in cal:
        i = cal["thresholds"].index(cal["best_confidence"])
        lines.append(
            f"Calibration: temperature {cal['temperature']:.3g}; confidence "
            f"threshold 'auto' = {cal['best_confidence']} (right-call rate "
            f"{cal['right_call_rate'][i]:.3f} on the validation split).")
    else:
        lines.append(f"Calibration: temperature {cal['temperature']:.3g}; "
                     "no validation split, so 'auto' confidence is "
                     f"{DEFAULT_CONFIDENCE}.")
    text = abstention_text(cal, clf)
    if text:
        lines.append(text)
    lines.append(mix_text(clf))
    lines.append("Query region: " + region_text(tc, summary) + ".")
    return "\n".join(lines)


def mix_text(clf) -> str:
    """The query mix the calibration was chosen for, and how to change
    it (classify's novel_species, format 3)."""
    ev = getattr(clf, "evidence", None)
    if ev is None:
        return ("Query mix: that of the validation split; this classifier "
                "keeps no validation evidence (written before 0.5.0), so "
                "classify's novel-species is not available.")
    new, genera = validation_shares(ev["kind"])
    return (f"Query mix: chosen for the validation split's {len(ev['kind']):,} "
            f"scored reads, {1 - new:.0%} of reference species, "
            f"{new - genera:.0%} of held-out species and {genera:.0%} of "
            f"held-out genera; classify --p-novel-species {new:.2f} "
            f"--p-novel-genera {genera:.2f} reproduces it, other shares "
            "choose it again for that mix.")


def region_text(tc: dict, summary: dict) -> str:
    """What reads the classifier was fitted for: one amplicon
    (query_region) or full ITS and its ITS1/ITS2 amplicons."""
    pair = summary.get("query_region")
    if pair:
        return (f"{pair['name']} amplicon: the reference was cut at the "
                f"primer sites {'/'.join(pair['forward']) or 'read start'} "
                f"... {'/'.join(pair['reverse']) or 'read end'} before "
                "fitting")
    cuts = summary.get("region_cutouts")
    if cuts is None:       # written before region robustness (< 0.3)
        return "as the reference reads (no amplicon training)"
    kinds = ", ".join(f"{n:,} {r}" for r, n in cuts.items())
    aug = tc.get("region_augment", 0)
    return (f"any: reference reads plus their amplicons in memory and "
            f"validation ({kinds}); {aug:.0%} of training reads replaced "
            "by one of their amplicons per epoch")


def abstention_overview(cal: dict, clf) -> list:
    """Rows about the reference memory, the neighbour mixture and the
    per-rank calibrator (format 2 classifiers)."""
    rows = [("Reference memory (reads kept with their embedding)",
             "memory-reads", len(clf.memory) if clf.memory else 0)]
    mix = cal.get("mixture")
    if mix:
        rows.append(("Lineage probabilities: network / k-mer neighbours / "
                     "embedding neighbours", "mixture",
                     f"{mix['net']:g} / {mix['kmer']:g} / {mix['emb']:g} "
                     f"(k {mix['k']}, vote temperature {mix['tau']:g})"))
    cb = cal.get("calibrator")
    rows.append(("Confidence", "confidence-kind",
                 "learned per-rank calibrator (P(call right)) on "
                 + ", ".join(cb["features"]) if cb else
                 "summed lineage probability"))
    scores = cal.get("scores") or {}
    if len(scores) > 1:     # --p-abstention auto: what the choice rested on
        rows.append(("Confidence chosen on validation (best right-call "
                     "rate of each)", "confidence-choice",
                     ", ".join(f"{k} {v:.3f}" for k, v in scores.items())))
    return rows


def abstention_text(cal: dict, clf) -> str:
    mix, cb = cal.get("mixture"), cal.get("calibrator")
    if not mix:
        return ""
    return (f"Reference memory of {len(clf.memory) if clf.memory else 0:,} "
            f"reads; lineage probabilities mix the network ({mix['net']:g}) "
            f"with votes of the {mix['k']} nearest reference reads by k-mer "
            f"similarity ({mix['kmer']:g}) and by embedding ({mix['emb']:g}),"
            f" vote temperature {mix['tau']:g}; the confidence is "
            + ("the probability that the call is right from a per-rank "
               "calibrator fitted on the validation split."
               if cb else "the summed lineage probability."))
