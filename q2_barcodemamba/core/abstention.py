"""From network, neighbours and calibrator to a call per read and rank.

For a batch of queries:

1. the lineage distribution is a mixture of the network's (temperature-
   scaled) lineage probabilities and the votes of the nearest reference
   reads, by k-mer similarity and by embedding (:class:`Mixture`);
2. the top-down walk (:meth:`.walk.LeafTree.walk`) picks one
   taxon per rank, each a child of the one above, with its summed
   probability (``mass``);
3. per rank, evidence for that taxon: its mass, the k-mer similarity of
   the nearest reference read of the taxon (``kmer_top``), its lead
   over the nearest read of any other taxon of that rank
   (``kmer_margin``) and how many reference reads the taxon has
   (``ref_reads``), optionally the same by embedding and the network's
   own mass (:func:`rank_evidence`);
4. the calibrator turns the evidence into the probability that the call
   at that rank is right (:mod:`.calibrator`).

:func:`fit_abstention` chooses the mixture (weights, number of voters
``k``, vote temperature ``tau``) and fits the calibrator on the
classifier's validation split, where the reference memory holds only the
training reads (cross-fitting): every choice maximises the share of right
calls on validation, with the calibrator's confidences computed out of
fold (a calibrator never scores the reads it was fitted on).
"""
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import shortlist
from .calibrator import RankCalibrator, group_folds, out_of_fold
from .inference import THRESHOLDS, chunks_of, right_call_curve, width
from .memory import (Neighbours, ReferenceClasses, ReferenceMemory,
                     _ref_reads, reference_classes)
from .walk import LeafTree

FEATURES = ("mass", "kmer_top", "kmer_margin", "ref_reads")
# rows x lineages per block of the walk in :class:`Caller` (8 MiB of
# float32): a block's probabilities, mixture and float64 sums stay in the
# CPU's cache instead of a (batch, lineages) matrix in memory (see
# :func:`walk_rows`)
WALK_ELEMENTS = 1 << 21
FORMAT3_FEATURES = ("mass", "kmer_top", "kmer_margin")   # before 0.6.0


@dataclass
class Mixture:
    """p = net * p_network + kmer * votes(k-mer neighbours)
    + emb * votes(embedding neighbours); the weights sum to 1."""
    net: float = 1.0
    kmer: float = 0.0
    emb: float = 0.0
    k: int = 1
    tau: float = 0.02

    def probs(self, p_net: torch.Tensor, nb: Optional[Neighbours],
              memory: Optional[ReferenceMemory]) -> torch.Tensor:
        if self.kmer <= 0 and self.emb <= 0:
            return p_net * self.net if self.net != 1.0 else p_net
        p = p_net * self.net                  # a new tensor: votes add in place
        if self.kmer > 0:
            memory.add_votes(p, nb.kmer_idx, nb.kmer_sim, self.k, self.tau,
                             self.kmer)
        if self.emb > 0:
            memory.add_votes(p, nb.emb_idx, nb.emb_sim, self.k, self.tau,
                             self.emb)
        return p

    def to_dict(self) -> dict:
        return asdict(self)


def default_grid(use_kmer: bool = True, use_emb: bool = True
                 ) -> List[Mixture]:
    """The mixtures tried on validation, over k and tau. With k-mer
    neighbours every mixture gives them at least 0.4 of the weight, and
    embedding votes enter only beside them: on the CBS splits mixtures
    without k-mer votes (the network alone, embedding votes alone) were
    never better out of fold or on test, and when a validation split
    happened to prefer one (one seed of three on full ITS) the test
    right-call rate fell by 10 to 17 points (docs/accuracy.md). Without
    k-mer similarity: the network alone and with embedding votes."""
    if use_kmer:
        weights = [(0.0, 1.0, 0.0), (0.3, 0.7, 0.0), (0.6, 0.4, 0.0)]
        if use_emb:
            weights += [(0.3, 0.5, 0.2)]
    else:
        weights = [(1.0, 0.0, 0.0)]
        if use_emb:
            weights += [(0.0, 0.0, 1.0), (0.5, 0.0, 0.5)]
    grid = []
    for w in weights:
        if w == (1.0, 0.0, 0.0):
            grid.append(Mixture())
            continue
        for k, tau in ((1, 0.02), (5, 0.02), (5, 0.1), (20, 0.05)):
            grid.append(Mixture(*w, k=k, tau=tau))
    return grid


def _top_and_margin(sim: np.ndarray, cand_cls: np.ndarray,
                    chosen: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per rank: best similarity among the candidates of the chosen class,
    and its lead over the best candidate of another known class. Without
    such a candidate the lowest candidate similarity stands in (a bound:
    the true value is at most that)."""
    low = sim.min(1, initial=0.0) if sim.shape[1] else np.zeros(len(sim))
    B, R = chosen.shape
    top, margin = np.zeros((B, R)), np.zeros((B, R))
    for r in range(R):
        same = cand_cls[r] == chosen[:, r:r + 1]
        other = ~same & (cand_cls[r] >= 0)
        t = np.where(same, sim, -np.inf).max(1, initial=-np.inf)
        o = np.where(other, sim, -np.inf).max(1, initial=-np.inf)
        t = np.where(np.isfinite(t), t, low)
        o = np.where(np.isfinite(o), o, low)
        top[:, r], margin[:, r] = t, t - o
    return top, margin


def rank_evidence(features: Sequence[str], chosen: np.ndarray,
                  mass: np.ndarray, nb: Optional[Neighbours],
                  ref: Optional[ReferenceClasses], p_net: torch.Tensor,
                  tree: LeafTree) -> np.ndarray:
    """Evidence (B, R, F) for the walk's calls ``chosen`` (B, R)."""
    cols: Dict[str, np.ndarray] = {"mass": mass}
    for kind in ("kmer", "emb"):
        if f"{kind}_top" in features or f"{kind}_margin" in features:
            idx = nb.kmer_idx if kind == "kmer" else nb.emb_idx
            sim = nb.kmer_sim if kind == "kmer" else nb.emb_sim
            cols[f"{kind}_top"], cols[f"{kind}_margin"] = _top_and_margin(
                sim, ref.cls[:, idx], chosen)
    if "ref_reads" in features:
        cols["ref_reads"] = _ref_reads(ref, chosen)
    if "net_mass" in features:
        cols["net_mass"] = tree.chosen_mass(p_net, chosen)
    return np.stack([cols[f] for f in features], axis=2)


def walk(p: torch.Tensor, tree: LeafTree) -> Tuple[np.ndarray, np.ndarray]:
    """The top-down walk (:meth:`.walk.LeafTree.walk`): chosen class and
    its summed probability (B, R), as numpy arrays."""
    chosen, mass = tree.walk(p)
    return chosen.numpy(), mass.numpy()


def fit_abstention(p_net, nb: Optional[Neighbours],
                   memory: Optional[ReferenceMemory], labels,
                   y: np.ndarray, groups: Sequence[str],
                   grid: Sequence[Mixture],
                   features: Sequence[str] = FEATURES,
                   learned=True, n_folds: int = 5, seed: int = 0,
                   progress: Optional[Callable[[str], None]] = None,
                   weight: Optional[np.ndarray] = None,
                   evidence: Optional[dict] = None) -> dict:
    """Choose the mixture, fit the calibrator and pick the threshold on
    validation reads: ``p_net`` their calibrated network probabilities
    ((n, n_leaves) tensor or a chunked :class:`.inference.LeafProbs`, so
    that no (n, n_leaves) matrix is needed), ``nb`` their neighbours in
    ``memory`` (training reads only), ``y`` (n, R) their targets over the
    training classes (-1 where the reference cannot know the rank),
    ``groups`` their species (reads of one species share a fold),
    ``weight`` (n,) what each read counts in the right calls and in the
    calibrator's fit (None: 1). ``evidence``: a dict that receives the
    chosen mixture's walk, evidence and folds on these reads (what
    :func:`.novelty.refit_for_novelty` needs).
    ``learned=False``: the confidence is the summed probability (no
    calibrator); ``learned="auto"``: whichever of the two makes more right
    calls on these reads (the calibrator's out-of-fold, the summed
    probability's at its best threshold; the calibrator on a tie), chosen
    with the mixture. Returns the JSON-ready calibration fields
    (``mixture``, ``calibrator``, ``features``, ``thresholds``,
    ``right_call_rate``, ``best_confidence``), ``abstention`` (the
    confidence chosen: "learned" or "summed"), ``score``, the best
    right-call rate, and ``scores``, the best of each kind tried."""
    if learned not in (True, False, "auto"):
        raise ValueError(f"learned must be True, False or 'auto', not "
                         f"{learned!r}.")
    kinds = [True, False] if learned == "auto" else [bool(learned)]
    tree = LeafTree(labels.leaf_to_class, labels.n_classes)
    ref = (reference_classes(labels.leaf_to_class, memory)
           if memory is not None else None)
    folds = group_folds(groups, n_folds, seed)
    n, R = y.shape
    chosen = np.full((len(grid), n, R), -1, dtype=np.int64)
    mass = np.zeros((len(grid), n, R))
    X = np.zeros((len(grid), n, R, len(features))) if True in kinds \
        else None
    # chunks outside, mixtures inside: each chunk's probabilities once
    for sl, p in chunks_of(p_net):
        nb_s = nb.take(sl) if nb is not None else None
        for m, mix in enumerate(grid):
            c, ms = walk(mix.probs(p, nb_s, memory), tree)
            chosen[m, sl], mass[m, sl] = c, ms
            if X is not None:
                X[m, sl] = rank_evidence(features, c, ms, nb_s, ref, p,
                                         tree)
    best, scores = _best(grid, kinds, chosen, mass, X, y, features, folds,
                         weight)
    if evidence is not None:        # what novelty.refit_for_novelty needs
        m = best["m"]
        evidence.update(chosen=chosen[m], mass=mass[m], y=y, folds=folds,
                        X=None if X is None else X[m])
    return _calibration(best, scores, X, features, weight, len(kinds) > 1,
                        progress)


def _calibration(best, scores, X, features, weight, tried_both: bool,
                 progress) -> dict:
    """The JSON-ready calibration of :func:`_best`'s choice (the calibrator
    fitted on all the reads when the confidence is learned)."""
    learned = best["learned"]
    calibrator = (RankCalibrator.fit(X[best["m"]], best["right"], features,
                                     best["valid"], weight=weight).to_dict()
                  if learned else None)
    mix = best["mixture"]
    if progress is not None:
        tried = (" (" + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                 + ")" if tried_both else "")
        progress(f"abstention: mixture network {mix.net:g} / k-mer "
                 f"neighbours {mix.kmer:g} / embedding neighbours "
                 f"{mix.emb:g} (k {mix.k}, tau {mix.tau:g}), "
                 f"{'learned' if learned else 'summed'} confidence{tried}; "
                 f"right-call rate on validation {best['score']:.3f} at "
                 f"confidence {best['threshold']}")
    return {"mixture": mix.to_dict(), "calibrator": calibrator,
            "features": list(features) if learned else ["mass"],
            "thresholds": THRESHOLDS, "right_call_rate": best["curve"],
            "best_confidence": best["threshold"], "score": best["score"],
            "abstention": "learned" if learned else "summed",
            "scores": scores}


def _best(grid, kinds, chosen, mass, X, y, features, folds, weight=None):
    """The (mixture, confidence kind) of :func:`fit_abstention` with the
    most (``weight``-ed) right calls at its best threshold (the first on a
    tie), and the best score of each kind ("learned": out-of-fold
    calibrator, "summed")."""
    best, scores = None, {}
    for kind in kinds:
        name = "learned" if kind else "summed"
        for m, mix in enumerate(grid):
            right = (chosen[m] == y) & (y >= 0)
            valid = chosen[m] >= 0
            conf = (out_of_fold(X[m], right, valid, features, folds, weight)
                    if kind else mass[m])
            curve = right_call_curve(chosen[m], conf, y, THRESHOLDS, weight)
            i = int(np.argmax(curve))
            scores[name] = max(scores.get(name, -1.0), float(curve[i]))
            if best is None or curve[i] > best["score"] + 1e-9:
                best = {"score": curve[i], "mixture": mix, "curve": curve,
                        "threshold": THRESHOLDS[i], "m": m, "right": right,
                        "valid": valid, "learned": kind}
    return best, scores


def epoch_grid(use_kmer: bool) -> List[Mixture]:
    """The few mixtures scored after every training epoch (no embedding
    votes: those would need the training reads re-embedded each epoch)."""
    if not use_kmer:
        return [Mixture()]
    return [Mixture(), Mixture(0.6, 0.4, 0.0, 5, 0.02),
            Mixture(0.3, 0.7, 0.0, 5, 0.02)]


def features_for(memory: bool, kmer: bool) -> Tuple[str, ...]:
    """The calibrator's evidence for a classifier with or without memory
    and k-mer similarity."""
    if memory and kmer:
        return FEATURES
    if memory:
        return ("mass", "emb_top", "emb_margin")
    return ("mass",)


class Caller:
    """Calls and confidences of a fitted classifier's calibration (the
    JSON of :func:`fit_abstention` plus ``temperature``) for batches of
    network outputs."""

    def __init__(self, calibration: dict, labels,
                 memory: Optional[ReferenceMemory]):
        self.temperature = float(calibration.get("temperature", 1.0))
        self.mixture = Mixture(**calibration.get("mixture", {}))
        cal = calibration.get("calibrator")
        self.calibrator = RankCalibrator.from_dict(cal) if cal else None
        self.features = tuple(calibration.get("features", ("mass",)))
        self.labels, self.memory = labels, memory
        self.tree = LeafTree(labels.leaf_to_class, labels.n_classes)
        self.ref = (reference_classes(labels.leaf_to_class, memory)
                    if memory is not None else None)
        m = self.mixture
        need = self.calibrator is not None
        self.n_kmer = 64 if memory is not None and (
            m.kmer > 0 or need and "kmer_top" in self.features) else 0
        self.n_emb = 32 if memory is not None and (
            m.emb > 0 or need and "emb_top" in self.features) else 0
        self.shortlist = shortlist.for_tree(self.tree)

    def kmer_neighbours(self, seqs: Sequence[str]):
        """The k-mer half of the neighbour search (it needs no network
        output, so ``predict`` runs it beside the network), or None."""
        if not self.n_kmer:
            return None
        return self.memory.kmer_neighbours(seqs, self.n_kmer)

    def neighbours(self, seqs: Sequence[str], z: torch.Tensor, kmer=None
                   ) -> Optional[Neighbours]:
        """Nearest reference reads of the batch (None without memory)."""
        if not (self.n_kmer or self.n_emb):
            return None
        return self.memory.neighbours(seqs, z, self.n_kmer, self.n_emb,
                                      kmer)

    def probs(self, seqs: Sequence[str], z: torch.Tensor,
              logits: torch.Tensor, kmer=None):
        """(mixture leaf probabilities, network probabilities, neighbours)
        of cleaned, oriented reads with embeddings ``z`` and leaf logits;
        ``kmer``: :meth:`kmer_neighbours` of ``seqs`` when computed
        already."""
        p_net = torch.softmax(logits.float() / self.temperature, dim=1)
        nb = self.neighbours(seqs, z, kmer)
        return self.mixture.probs(p_net, nb, self.memory), p_net, nb

    def __call__(self, seqs: Sequence[str], z: torch.Tensor, logits,
                 kmer=None) -> Tuple[np.ndarray, np.ndarray]:
        """Chosen class (B, R) and confidence (B, R) per rank. ``logits``:
        (B, n_leaf) tensor or a chunked source
        (:class:`.inference.HeadLogits`, the leaf head applied block by
        block). Rows go through softmax, mixture, walk and calibrator in
        blocks of :func:`walk_rows` (every step is per row: the same
        numbers as one block), or, for references of
        :data:`.shortlist.MIN_LEAVES` lineages on a CPU, over a shortlist
        of lineages per read (:func:`.shortlist.call`)."""
        if shortlist.applies(self.shortlist, logits):
            return shortlist.call(self, seqs, z, logits, kmer)
        nb = self.neighbours(seqs, z, kmer)
        n, R = len(logits), self.tree.n_ranks
        chosen = np.full((n, R), -1, dtype=np.int64)
        conf = np.zeros((n, R))
        rows = walk_rows(width(logits))
        for part, lg in chunks_of(logits):
            for s in range(0, len(lg), rows):
                e = min(len(lg), s + rows)
                sl = slice(part.start + s, part.start + e)
                p_net = torch.softmax(lg[s:e].float() / self.temperature,
                                      dim=1)
                nb_s = nb.take(sl) if nb is not None else None
                c, m = walk(self.mixture.probs(p_net, nb_s, self.memory),
                            self.tree)
                if self.calibrator is not None:
                    m = self.calibrator.confidence(rank_evidence(
                        self.features, c, m, nb_s, self.ref, p_net,
                        self.tree))
                chosen[sl], conf[sl] = c, m
        return chosen, conf


def walk_rows(n_leaf: int) -> int:
    """Rows per block of the walk over ``n_leaf`` lineages: at most
    :data:`WALK_ELEMENTS` probabilities (50 rows at UNITE ITS2's 41,700
    lineages, 5 at 417,000). At 417,000 lineages softmax, mixture and
    cumulative sums took 4.6 ms per read in ~256-row batches and 1.7 ms
    in 5-row blocks, most of the difference page faults and memory
    traffic."""
    return max(1, WALK_ELEMENTS // max(1, n_leaf))
