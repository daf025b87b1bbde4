"""Scores of taxonomy calls against the truth of a split (all in percent).

A rank is *knowable* for a query when its true taxon down to that rank
occurs in the reference. At each rank a call is right when the rank is
knowable and the call names the true taxon there, or when the rank is not
knowable and the call asserts nothing at that rank. The *right call* is
right at every rank: the deepest knowable rank named correctly and nothing
deeper asserted. Placeholder labels (``unidentified``, empty) end a lineage,
in calls and truth alike (``normalize_lineage``, the package's own rule).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from q2_barcodemamba.core.inference import THRESHOLDS
from q2_barcodemamba.core.taxonomy import (RANKS, is_unknown,
                                           normalize_lineage, parse_taxonomy)

N_RANKS = len(RANKS)


def reference_prefixes(ref_taxonomy: Dict[str, str]) -> set:
    prefixes = set()
    for lin in parse_taxonomy(list(ref_taxonomy), list(ref_taxonomy.values())):
        prefixes.update(";".join(lin[:r + 1]) for r in range(len(lin)))
    return prefixes


class Truth:
    """True lineages of the queries of one split part and what of them the
    reference can know."""

    def __init__(self, truth: Dict[str, tuple], prefixes: set):
        self.ids = sorted(truth)
        self.category = [truth[i][1] for i in self.ids]
        self.lineage = [normalize_lineage(truth[i][0]) for i in self.ids]
        self.knowable = np.array([
            max([d for d in range(len(lin) + 1)
                 if d == 0 or ";".join(lin[:d]) in prefixes])
            for lin in self.lineage])

    def prefix(self, k: int, depth: int) -> str:
        return ";".join(self.lineage[k][:depth])


def evaluate(truth: Truth, calls: Dict[str, str]) -> dict:
    """Metrics of ``calls`` ({id: taxon}) in percent; a query without a
    call counts as Unassigned and is counted in ``n_missing``."""
    n = len(truth.ids)
    right_rank = np.zeros((n, N_RANKS), dtype=bool)
    depth = np.zeros(n, dtype=int)
    n_missing = 0
    for k, rid in enumerate(truth.ids):
        if rid not in calls:
            n_missing += 1
        call = normalize_lineage(calls.get(rid, ""))
        depth[k] = len(call)
        for r in range(N_RANKS):
            d = r + 1
            if d <= truth.knowable[k]:
                right_rank[k, r] = (len(call) >= d and ";".join(call[:d])
                                    == truth.prefix(k, d))
            else:
                right_rank[k, r] = len(call) < d
    cat = np.array(truth.category)

    def pct(mask_values, where):
        return (float(100 * mask_values[where].mean()) if where.any()
                else float("nan"))

    seen, usp, ugen = (cat == "seen", cat == "unseen_species",
                       cat == "unseen_genus")
    out = {
        "n_queries": n, "n_missing": n_missing,
        "n_per_category": {c: int((cat == c).sum()) for c in
                           ("seen", "unseen_species", "unseen_genus")},
        "rank_accuracy": {RANKS[r]: pct(right_rank[:, r], np.ones(n, bool))
                          for r in range(N_RANKS)},
        "right_call": pct(right_rank.all(1), np.ones(n, bool)),
        "seen_species_accuracy": pct(right_rank[:, 6], seen),
        "unseen_species_genus_accuracy": pct(right_rank[:, 5], usp),
        "unseen_species_overcall": pct(depth >= 7, usp),
        "unseen_genus_family_accuracy": pct(right_rank[:, 4], ugen),
        "unseen_genus_overcall": pct(depth >= 6, ugen),
        "right_call_per_category": {
            c: pct(right_rank.all(1), cat == c)
            for c in ("seen", "unseen_species", "unseen_genus")},
    }
    return out


# ------------------------------------------------ per-rank confidences
def calls_at(labels: List[List[Optional[str]]], conf: np.ndarray,
             threshold: float) -> List[str]:
    """Truncate per-rank calls (labels[i][r] = lineage prefix or None,
    conf (n, R)) at the deepest rank of the leading run with conf >=
    threshold, as classify-sklearn and barcodemamba classify do."""
    out = []
    for i, labs in enumerate(labels):
        last = None
        for r, lab in enumerate(labs):
            if lab is None or conf[i, r] < threshold:
                break
            last = lab
        out.append(last if last is not None else "Unassigned")
    return out


def threshold_curve(truth: Truth, labels, conf, ids: Sequence[str]) -> dict:
    """Right-call rate and rank accuracies per confidence threshold."""
    curve = {"thresholds": THRESHOLDS, "right_call": [], "rank_accuracy": []}
    for t in THRESHOLDS:
        m = evaluate(truth, dict(zip(ids, calls_at(labels, conf, t))))
        curve["right_call"].append(m["right_call"])
        curve["rank_accuracy"].append(m["rank_accuracy"])
    return curve


def calibration_error(truth: Truth, labels, conf, ids: Sequence[str],
                      n_bins: int = 10) -> dict:
    """Expected calibration error (percent) of the confidence at each rank:
    sum over 10 equal-width bins of |accuracy - mean confidence| weighted
    by the bin's share of reads. A label at a rank the reference cannot
    know is wrong; a read without a label at a rank has confidence 0 there.
    Also returns the reliability diagram data per rank."""
    pos = {rid: k for k, rid in enumerate(truth.ids)}
    out = {"ece": {}, "reliability": {}}
    for r in range(N_RANKS):
        c = np.zeros(len(ids))
        ok = np.zeros(len(ids), dtype=bool)
        for i, rid in enumerate(ids):
            k = pos[rid]
            lab = labels[i][r]
            if lab is None or is_unknown(lab.rsplit(";", 1)[-1]):
                continue
            c[i] = conf[i, r]
            ok[i] = (r + 1 <= truth.knowable[k]
                     and lab == truth.prefix(k, r + 1))
        bins = np.minimum((c * n_bins).astype(int), n_bins - 1)
        ece, diagram = 0.0, []
        for b in range(n_bins):
            sel = bins == b
            if sel.any():
                gap = abs(ok[sel].mean() - c[sel].mean())
                ece += sel.mean() * gap
                diagram.append([float(c[sel].mean()), float(ok[sel].mean()),
                                int(sel.sum())])
        out["ece"][RANKS[r]] = float(100 * ece)
        out["reliability"][RANKS[r]] = diagram
    return out
