"""Metrics of a taxonomy classification against the expected taxonomy.

Pure pandas/numpy (no qiime2), used by the ``evaluate-classifications``
visualizer. Definitions (also shown on the page and in docs/visualizers.md):

* A lineage is normalised by stripping spaces around each label and cutting
  it at the first empty or unknown label (``g__``, ``__``, ``''``,
  ``s__unidentified``...); ``Unassigned`` is the empty lineage
  (:func:`q2_barcodemamba.core.taxonomy.normalize_lineage`, the rule the
  classifier applies to its reference).
* The taxon of a read at rank r is its lineage prefix down to r, so a rank
  is right only when all ranks above it are right too (homonyms under two
  parents stay distinct, as in the classifier's own labels).
* At each rank every read is exactly one of: ``correct`` (same taxon, or
  both lineages end above r), ``misclassified`` (both reach r, different
  taxa), ``under_call`` (expected reaches r, prediction stops above it),
  ``over_call`` (prediction reaches r, expected lineage ends above it).
  The four rates sum to 1 per rank.
* A read's call is right at its deepest predicted rank d when the expected
  lineage reaches d with the same taxon; Unassigned reads have no call.
"""
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .core.inference import THRESHOLDS
from .core.taxonomy import UNASSIGNED_NAMES, normalize_lineage, split_lineage

OUTCOMES = ("correct", "misclassified", "under_call", "over_call")
RANK_NAMES = {"k": "kingdom", "d": "domain", "p": "phylum", "c": "class",
              "o": "order", "f": "family", "g": "genus", "s": "species"}
_PREFIX_LETTER = re.compile(r"^([A-Za-z])_{2}")


def n_rank_fields(taxa: Sequence) -> int:
    """Largest number of ';'-separated fields among assigned lineages."""
    n = [len(split_lineage(t)) for t in taxa
         if isinstance(t, str) and t.strip().lower() not in UNASSIGNED_NAMES]
    return max(n, default=0)


def rank_names(lineages: Sequence[Tuple[str, ...]], n_ranks: int
               ) -> List[str]:
    """Name each rank from the most common label prefix there ('g__' ->
    genus); ``rankN`` where there is no known prefix."""
    names = []
    for r in range(n_ranks):
        letters = pd.Series(
            [m.group(1).lower() for lin in lineages if len(lin) > r
             for m in [_PREFIX_LETTER.match(lin[r])] if m], dtype=object)
        letter = letters.mode().iloc[0] if len(letters) else None
        name = RANK_NAMES.get(letter, f"rank{r + 1}")
        names.append(name if name not in names else f"rank{r + 1}")
    return names


def parse_confidence(values) -> np.ndarray:
    """Confidences as floats; NaN where missing, non-numeric ('disable')
    or outside [0, 1] (e.g. -1); up to 1 + 1e-6 counts as 1."""
    conf = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    conf = conf.astype(float).to_numpy()
    # summed probabilities may exceed 1 by float rounding
    # (classify-sklearn writes e.g. 1.0000000000000002)
    conf[(conf > 1) & (conf <= 1 + 1e-6)] = 1.0
    conf[(conf < 0) | (conf > 1)] = np.nan
    return conf


def align(classification: pd.DataFrame, expected: pd.Series, label: str
          ) -> pd.Series:
    """Expected taxa in the order of ``classification``'s reads; a clear
    error naming the reads that have no expected taxonomy."""
    missing = classification.index.difference(expected.index)
    if len(missing):
        shown = ", ".join(repr(i) for i in sorted(missing)[:5])
        raise ValueError(
            f"{len(missing)} of the {len(classification)} reads of "
            f"{label!r} are missing from the expected taxonomy, e.g. "
            f"{shown}. Supply an expected taxonomy that covers every "
            "classified read, or filter the reads to those with a known "
            "taxonomy before classifying them (e.g. qiime feature-table "
            "filter-seqs --m-metadata-file expected-taxonomy.qza).")
    if expected.index.duplicated().any():
        dup = list(expected.index[expected.index.duplicated()][:5])
        raise ValueError(f"The expected taxonomy lists some ids more than "
                         f"once, e.g. {dup}; ids must be unique.")
    return expected.loc[classification.index]


def rank_outcomes(expected: Sequence[Tuple[str, ...]],
                  predicted: Sequence[Tuple[str, ...]], n_ranks: int
                  ) -> np.ndarray:
    """Outcome code per read and rank, (n, n_ranks) int: index into
    OUTCOMES (0 correct, 1 misclassified, 2 under_call, 3 over_call)."""
    out = np.zeros((len(expected), n_ranks), dtype=np.int64)
    for i, (e, p) in enumerate(zip(expected, predicted)):
        for r in range(n_ranks):
            e_known, p_known = len(e) > r, len(p) > r
            if e_known and p_known:
                out[i, r] = 0 if e[:r + 1] == p[:r + 1] else 1
            elif e_known:
                out[i, r] = 2
            elif p_known:
                out[i, r] = 3
    return out


def rank_metrics(outcomes: np.ndarray, names: Sequence[str],
                 expected_depth: np.ndarray) -> pd.DataFrame:
    """Counts and rates of each outcome per rank (rates over all reads)."""
    n = outcomes.shape[0]
    rows = []
    for r, name in enumerate(names):
        counts = np.bincount(outcomes[:, r], minlength=len(OUTCOMES))
        row = {"rank": name, "n_reads": n,
               "n_expected_known": int((expected_depth > r).sum())}
        row.update({k: int(c) for k, c in zip(OUTCOMES, counts)})
        row["accuracy"] = counts[0] / n if n else np.nan
        for k, c in zip(OUTCOMES[1:], counts[1:]):
            row[f"{k}_rate"] = c / n if n else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def deepest_rank_right(expected: Sequence[Tuple[str, ...]],
                       predicted: Sequence[Tuple[str, ...]]) -> np.ndarray:
    """True where the call is right at its deepest predicted rank."""
    return np.array([bool(p) and e[:len(p)] == p
                     for e, p in zip(expected, predicted)], dtype=bool)


def reliability(conf: np.ndarray, right: np.ndarray, n_bins: int
                ) -> Tuple[pd.DataFrame, float]:
    """Reliability diagram bins (equal width over [0, 1]; 1.0 falls in the
    last bin) and the expected calibration error
    ECE = sum_b n_b / N * |accuracy_b - mean confidence_b| (Guo et al. 2017).
    Reads with NaN confidence are left out."""
    ok = ~np.isnan(conf)
    conf, right = conf[ok], right[ok]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # floor(c * n_bins), tolerant to float error (0.7 falls in [0.7, 0.8))
    idx = np.clip(np.floor(conf * n_bins + 1e-9).astype(int), 0, n_bins - 1)
    rows, ece = [], 0.0
    for b in range(n_bins):
        sel = idx == b
        nb = int(sel.sum())
        mc = float(conf[sel].mean()) if nb else np.nan
        acc = float(right[sel].mean()) if nb else np.nan
        if nb:
            ece += nb / len(conf) * abs(acc - mc)
        rows.append({"bin_lower": round(edges[b], 6),
                     "bin_upper": round(edges[b + 1], 6), "n_reads": nb,
                     "mean_confidence": mc, "accuracy": acc})
    return pd.DataFrame(rows), (ece if len(conf) else np.nan)


def threshold_curve(conf: np.ndarray, right: np.ndarray,
                    assigned: np.ndarray,
                    thresholds: Sequence[float] = THRESHOLDS
                    ) -> pd.DataFrame:
    """For each threshold t: reads with a call and confidence >= t
    (count and share of all reads with a usable confidence) and the
    share of them right at their deepest predicted rank."""
    ok = ~np.isnan(conf)
    conf, right, assigned = conf[ok], right[ok], assigned[ok]
    rows = []
    for t in thresholds:
        keep = assigned & (conf >= t - 1e-9)
        n = int(keep.sum())
        rows.append({"threshold": t, "n_retained": n,
                     "retained_share": n / len(conf) if len(conf) else np.nan,
                     "accuracy": float(right[keep].mean()) if n else np.nan})
    return pd.DataFrame(rows)


def confusion(expected: Sequence[Tuple[str, ...]],
              predicted: Sequence[Tuple[str, ...]], rank: int, top_n: int
              ) -> pd.DataFrame:
    """Read counts, expected taxon at ``rank`` (rows) x predicted taxon
    (columns), for the ``top_n`` most frequent expected taxa; the rest is
    pooled into 'other' rows/columns. Labels show the rank's label, with
    its parent when two taxa share a name."""
    def key(lin):
        return lin[:rank + 1] if len(lin) > rank else None

    e_keys = [key(e) for e in expected]
    p_keys = [key(p) for p in predicted]
    counts = {}
    for k in e_keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    top = sorted(counts, key=lambda k: (-counts[k], k))[:top_n]
    names = [k[-1] for k in top]
    labels = {k: (k[-1] if names.count(k[-1]) == 1 else
                  f"{k[-1]} ({k[-2] if len(k) > 1 else ''})") for k in top}
    other_e, none_e = "other (expected)", "(expected ends above rank)"
    other_p, none_p = "other taxon", "(no call at rank)"
    rows = [labels[k] for k in top] + [other_e, none_e]
    cols = [labels[k] for k in top] + [other_p, none_p]
    table = pd.DataFrame(0, index=rows, columns=cols, dtype=np.int64)
    for e, p in zip(e_keys, p_keys):
        row = none_e if e is None else labels.get(e, other_e)
        col = none_p if p is None else labels.get(p, other_p)
        table.loc[row, col] += 1
    # pooled rows/columns only when they hold reads
    table = table.drop(index=[r for r in (other_e, none_e)
                              if table.loc[r].sum() == 0])
    table = table.drop(columns=[c for c in (other_p, none_p)
                                if table[c].sum() == 0])
    table.index.name = "expected"
    table.columns.name = "predicted"
    return table


def evaluate(classification: pd.DataFrame, expected: pd.Series, label: str,
             n_ranks: Optional[int] = None, names: Sequence[str] = None,
             n_bins: int = 10) -> dict:
    """All metrics of one classification (DataFrame with 'Taxon' and
    optionally 'Confidence', indexed by read id) against ``expected``
    (read id -> lineage string)."""
    if len(classification) == 0:
        raise ValueError(f"The classification {label!r} has no reads.")
    exp_raw = align(classification, expected, label)
    exp = [normalize_lineage(t) for t in exp_raw]
    pred = [normalize_lineage(t) for t in classification["Taxon"]]
    if n_ranks is None:
        n_ranks = max(n_rank_fields(list(exp_raw)),
                      n_rank_fields(list(classification["Taxon"])), 1)
    names = list(names or rank_names(exp, n_ranks))
    outcomes = rank_outcomes(exp, pred, n_ranks)
    e_depth = np.array([len(e) for e in exp])
    p_depth = np.array([len(p) for p in pred])
    metrics = rank_metrics(outcomes, names, e_depth)
    if "Confidence" in classification.columns:
        conf = parse_confidence(classification["Confidence"])
    else:
        conf = np.full(len(classification), np.nan)
    right = deepest_rank_right(exp, pred)
    assigned = p_depth > 0
    has_conf = bool((~np.isnan(conf)).any())
    # the reliability diagram scores calls: Unassigned reads have none
    rel, ece = (reliability(np.where(assigned, conf, np.nan), right, n_bins)
                if has_conf else (None, np.nan))
    curve = threshold_curve(conf, right, assigned) if has_conf else None
    per_read = pd.DataFrame({
        "expected": [";".join(e) or "Unassigned" for e in exp],
        "predicted": [";".join(p) or "Unassigned" for p in pred],
        "confidence": conf, "expected_depth": e_depth,
        "predicted_depth": p_depth, "right_at_deepest_call": right,
        **{f"{n}_outcome": [OUTCOMES[c] for c in outcomes[:, r]]
           for r, n in enumerate(names)}},
        index=classification.index)
    per_read.index.name = "Feature ID"
    return {
        "label": label, "names": names, "n_reads": len(exp),
        "n_unassigned": int((~assigned).sum()),
        "n_with_confidence": int((~np.isnan(conf)).sum()),
        "has_confidence": has_conf,
        "deepest_call_accuracy": (float(right[assigned].mean())
                                  if assigned.any() else np.nan),
        "rank_metrics": metrics, "reliability": rel, "ece": ece,
        "thresholds": curve, "per_read": per_read,
        "expected": exp, "predicted": pred,
    }
