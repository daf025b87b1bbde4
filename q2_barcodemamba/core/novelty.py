"""The query mix at classify time (``classify --p-novel-species``).

Every choice :func:`.abstention.fit_abstention` makes on validation
(confidence kind, calibrator, ``auto`` threshold) counts each validation
read once, so it suits the validation split's mix of reads of reference
species, held-out species and held-out genera. A classifier keeps the
evidence of those reads (``TaxonomicClassifier.evidence``, format 3), and
:func:`calibration_for` chooses them again with the reads weighted to the
mix a user expects: a change of the prior of the query mix (Saerens,
Latinne & Decaestecker 2002), the prior given by the user.
"""
from typing import Callable, Optional, Tuple

import numpy as np

from .abstention import Mixture, _best, _calibration

# a query mix (novel_species, novel_genera) closer than this to the
# validation split's keeps the fitted calibration: choosing the confidence
# and threshold again on a few hundred validation reads weighted slightly
# differently moved right calls by noise (full-ITS yeasts with the test
# queries' own shares, 0.55 vs 0.47 on validation: 61.3 / 54.4 / 55.9 ->
# 59.8 / 49.2 / 42.0 %), and only a large shift (UNITE ITS1, 0.80 vs 0.45:
# 27.0 -> 36.7 % mean) paid; the value was set after those nine runs
MIN_MIX_SHIFT = 0.2


def learned_option(abstention: str):
    """``fit_abstention``'s ``learned`` for a TrainConfig.abstention:
    "auto", True ("learned") or False ("summed")."""
    return "auto" if abstention == "auto" else abstention == "learned"


def validation_shares(kind: np.ndarray) -> Tuple[float, float]:
    """(share of held-out species or genera, share of held-out genera)
    among validation reads of ``kind`` (:func:`.validation.read_kinds`):
    the ``novel_species``/``novel_genera`` of the fitted calibration."""
    kind = np.asarray(kind)
    return float((kind > 0).mean()), float((kind == 2).mean())


def novelty_weights(kind: np.ndarray, novel_species: float,
                    novel_genera: Optional[float] = None) -> np.ndarray:
    """Weights (n,) of validation reads of ``kind`` (0: lineage known to its
    last rank, 1: last taxon new, 2: two or more taxa new; see
    :func:`.validation.read_kinds`) such that reads of a new species (kinds
    1 and 2) weigh ``novel_species`` of the total and reads of a new genus
    (kind 2) ``novel_genera`` of it (None: the same part of
    ``novel_species`` as on validation); mean weight 1."""
    kind = np.asarray(kind)
    count = np.bincount(kind, minlength=3).astype(np.float64)
    if not 0.0 <= novel_species <= 1.0:
        raise ValueError(f"novel_species must be in [0, 1], not "
                         f"{novel_species}.")
    if novel_genera is None:
        novel_genera = (novel_species * count[2] / (count[1] + count[2])
                        if count[1] + count[2] else 0.0)
    if not 0.0 <= novel_genera <= novel_species:
        raise ValueError(f"novel_genera must be in [0, novel_species = "
                         f"{novel_species}], not {novel_genera}.")
    share = np.array([1.0 - novel_species, novel_species - novel_genera,
                      novel_genera])
    missing = (share > 0) & (count == 0)
    if missing.any():
        names = ("reads of known lineages", "held-out species",
                 "held-out genera")
        raise ValueError(
            "the classifier's validation reads hold no "
            + " and no ".join(n for n, m in zip(names, missing) if m)
            + f" to weigh {novel_species} new species / {novel_genera} new "
            "genera: leave the shares unset for this classifier.")
    w = share[kind] / np.maximum(count[kind], 1.0)
    return w * (len(w) / w.sum())


def refit_for_novelty(calibration: dict, evidence: dict, learned,
                      novel_species: float,
                      novel_genera: Optional[float] = None,
                      progress: Optional[Callable[[str], None]] = None
                      ) -> dict:
    """The calibration :func:`fit_abstention` would have chosen for the
    shipped mixture had the validation reads of held-out species and
    genera weighed ``novel_species`` and ``novel_genera`` of all
    (:func:`novelty_weights`): the confidence kind
    (as ``learned`` allowed at fit time), the calibrator and the threshold
    are chosen again on the classifier's stored validation evidence
    (``evidence``: ``chosen``, ``mass``, ``y``, ``folds``, ``kind``, ``X``
    and ``features``). This is a change of the prior of the query mix
    (Saerens et al. 2002) chosen by the user, who knows what share of the
    queries to expect from taxa missing in the reference; the network,
    mixture and temperature stay."""
    weight = novelty_weights(evidence["kind"], novel_species, novel_genera)
    kinds = [True, False] if learned == "auto" else [bool(learned)]
    X = evidence.get("X")
    if X is None:
        kinds = [False]
    features = list(evidence["features"])
    mix = Mixture(**calibration["mixture"])
    best, scores = _best([mix], kinds, evidence["chosen"][None],
                         evidence["mass"][None],
                         None if X is None else X[None], evidence["y"],
                         features, evidence["folds"], weight)
    out = _calibration(best, scores, None if X is None else X[None],
                       features, weight, len(kinds) > 1, progress)
    out["temperature"] = calibration.get("temperature", 1.0)
    out["novel_species"] = float(novel_species)
    out["novel_genera"] = (None if novel_genera is None
                           else float(novel_genera))
    return out


def calibration_for(calibration: dict, evidence: Optional[dict],
                    abstention: str, novel_species: Optional[float],
                    novel_genera: Optional[float] = None,
                    progress: Optional[Callable[[str], None]] = None
                    ) -> dict:
    """The calibration that classifies: ``calibration`` (the fitted one)
    or, with ``novel_species``, the one :func:`refit_for_novelty` chooses
    on ``evidence`` for that mix, unless both shares are within
    :data:`MIN_MIX_SHIFT` of the validation split's. ``abstention``: the
    classifier's TrainConfig.abstention (which kinds the refit may
    choose)."""
    if novel_species is None:
        if novel_genera is not None:
            raise ValueError("novel_genera needs novel_species (the share "
                             "of queries of new species, at least that of "
                             "new genera).")
        return calibration
    if evidence is None:
        raise ValueError(
            "novel_species needs a classifier that keeps its validation "
            "evidence (fitted with q2-barcodemamba 0.5.0 or later); this "
            "one does not: fit it again, or leave novel_species unset.")
    val_s, val_g = validation_shares(evidence["kind"])
    shift = max(abs(novel_species - val_s), 0.0 if novel_genera is None
                else abs(novel_genera - val_g))
    if shift < MIN_MIX_SHIFT:
        if progress is not None:
            progress(f"query mix {novel_species:g} new species is within "
                     f"{MIN_MIX_SHIFT:g} of the validation split's "
                     f"({val_s:.2f} / {val_g:.2f} new genera): the fitted "
                     "calibration is kept")
        return calibration
    return refit_for_novelty(calibration, evidence,
                             learned_option(abstention),
                             float(novel_species),
                             None if novel_genera is None
                             else float(novel_genera), progress)
