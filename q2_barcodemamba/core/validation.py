"""The validation half of fitting: the rows a classifier is fitted and
validated on (reference reads, their amplicons, noisy copies of the
validation reads) and the per-epoch score and final calibration on the
held-out validation rows (:class:`Validation`)."""
from typing import List, Tuple

import numpy as np
import torch

from .abstention import (Mixture, default_grid, epoch_grid, features_for,
                         fit_abstention)
from .augment import noisy_copies
from .config import TrainConfig
from .inference import HeadLogits, LeafProbs, fit_temperature
from .memory import ReferenceMemory
from .novelty import learned_option
from .regions import DEFAULT_REGIONS, cutouts
from .runtime import log


def known_in(y: np.ndarray, y_ref: np.ndarray) -> np.ndarray:
    """Targets ``y`` (n, R) with classes absent from ``y_ref`` set to -1,
    so a held-out species is scored at its genus (if that was seen)."""
    out = y.copy()
    for r in range(y.shape[1]):
        seen = np.zeros(max(y.max(initial=0), y_ref.max(initial=0)) + 1,
                        dtype=bool)
        seen[y_ref[:, r][y_ref[:, r] >= 0]] = True
        col = out[:, r]
        col[(col >= 0) & ~seen[np.maximum(col, 0)]] = -1
    # below an unknown rank nothing is known
    unknown = np.cumsum(out < 0, axis=1) > 0
    out[unknown] = -1
    return out


def read_kinds(y_all: np.ndarray, y_known: np.ndarray) -> np.ndarray:
    """Kind (n,) of validation reads with targets ``y_all`` (n, R) over
    every reference class and ``y_known`` (n, R) over the training classes
    (:func:`known_in`): 0 a read whose lineage is known down to its last
    rank (a held-out haplotype), 1 one whose last taxon is new (a held-out
    species), 2 one with two or more new taxa (a held-out genus)."""
    return np.minimum((y_all >= 0).sum(1) - (y_known >= 0).sum(1),
                      2).astype(np.int64)


# validation rows that score epochs and calibrate (Validation): at most
# MAX_SCORED, and at most SCORE_BUDGET / lineages (but MIN_SCORED): the
# score's cost grows with rows x lineages x (temperatures + mixtures).
# Every reference measured so far (<= 41,700 lineages) keeps 16,384; a 10x
# UNITE ITS2 reference (417,120 lineages) scores 2,574 rows (standard error
# of a right-call rate of 0.5: 1.0 point) instead of 16,384 (0.4 point),
# its epoch score ~6x cheaper (rows x lineages x (temperatures + mixtures)).
MAX_SCORED, MIN_SCORED, SCORE_BUDGET = 16384, 2048, 2**30


def scored_rows(n_leaf: int) -> int:
    """How many validation rows score epochs and calibrate, for a
    classifier of ``n_leaf`` leaf lineages."""
    return int(min(MAX_SCORED,
                   max(MIN_SCORED, SCORE_BUDGET // max(1, n_leaf))))


# share of reference reads that must hold every region (ITS1 and ITS2) for
# Rows to add their amplicons: full-ITS references 99.9 %, the shared ITS1
# UNITE set 1.8 %, ITS2 sets 0 %
MULTI_REGION = 0.5


class Rows:
    """The reads of a reference, then the ITS1/ITS2 amplicons cut from
    them (:func:`.regions.cutouts`) when ``region_cutouts`` is on, the
    classifier is not specialised to one query region and at least
    :data:`MULTI_REGION` of the reads hold every region (a multi-region
    reference such as full ITS), then (with
    ``validation_errors`` > 0) one copy with sequencing errors of each
    validation read and amplicon, which only validation asks (never in a
    memory).
    ``parent[r]`` is the read row r came from."""

    def __init__(self, seqs: List[str], tc: TrainConfig, val_idx, progress):
        n = len(seqs)
        parent, cut, region = np.zeros(0, np.int64), [], []
        if tc.region_cutouts and tc.query_region.lower() == "any":
            parent, cut, region = cutouts(seqs, tc.min_length)
            # a single-region reference (ITS1 or ITS2 reads, a few of them
            # longer) keeps its reads as they are: the odd cut-outs of its
            # long reads only made validation unlike the queries
            multi = np.mean(np.bincount(parent, minlength=n)
                            >= len(DEFAULT_REGIONS)) if n else 0.0
            if len(cut) and multi < MULTI_REGION:
                progress(f"region cut-outs: {multi:.1%} of the reference "
                         "reads hold every region (ITS1 and ITS2), under "
                         f"{MULTI_REGION:.0%}: a single-region reference, "
                         "no amplicons added")
                parent, cut, region = np.zeros(0, np.int64), [], []
        self.seqs = list(seqs) + cut
        self.parent = np.concatenate([np.arange(n), parent])
        # a copy with errors of every validation row (reads and amplicons):
        # as many noisy queries as clean ones
        val_rows = np.flatnonzero(np.isin(self.parent, val_idx))
        noisy = noisy_copies([self.seqs[r] for r in val_rows],
                             tc.validation_errors, tc.min_length,
                             tc.random_seed)
        self.seqs += noisy
        self.parent = np.concatenate([self.parent,
                                      self.parent[val_rows][:len(noisy)]])
        self.n_memory = n + len(cut)            # rows a memory may hold
        self.counts = {r: region.count(r) for r in DEFAULT_REGIONS}
        if cut:
            progress("amplicons cut from the reference reads for the memory "
                     "and validation: " + ", ".join(
                         f"{r} {c}" for r, c in self.counts.items()))

    def of(self, idx: np.ndarray, memory: bool = False) -> np.ndarray:
        """Rows of the reads ``idx``, of their amplicons and (unless
        ``memory``) of their copies with errors."""
        rows = np.flatnonzero(np.isin(self.parent, idx))
        return rows[rows < self.n_memory] if memory else rows


class Validation:
    """The validation half of fitting. ``score`` rates the network after
    each epoch by the right calls of the whole classifier on the validation
    reads (network + k-mer neighbours among the training reads + learned
    abstention, a small grid of mixtures); ``calibrate`` fits what ships
    (temperature, mixture, calibrator, threshold) for the final network,
    with a memory of the training reads only, so no validation read finds
    itself (cross-fitting).

    Both score at most :func:`scored_rows` validation rows (a seeded
    sample): their cost grows with rows x lineages, which for a reference
    10x UNITE's ITS2 set would make each epoch's score hours long. Every
    validation row still counts in the validation loss."""

    def __init__(self, clf, seqs, lineages, y, train_idx, val_idx,
                 progress=log):
        tc, self.labels = clf.train_config, clf.labels
        R = len(self.labels.rank_names)
        self.pick = np.arange(len(val_idx))
        cap = scored_rows(len(self.labels.leaves))
        if len(val_idx) > cap:
            self.pick = np.sort(np.random.default_rng(tc.random_seed).choice(
                len(val_idx), cap, replace=False))
            progress(f"validation: scoring and calibrating on {cap} "
                     f"of the {len(val_idx)} validation rows (seeded sample)")
        self.train_idx, self.val_idx = train_idx, val_idx[self.pick]
        val_idx = self.val_idx
        self.y_val = known_in(y[val_idx, :R], y[train_idx, :R])
        self.kind = read_kinds(y[val_idx, :R], self.y_val)
        self.evidence: dict = {}    # filled by calibrate()
        self.groups = [";".join(lineages[i]) for i in val_idx]
        self.vseqs = [seqs[i] for i in val_idx]
        self.kmer = tc.memory and tc.kmer_similarity
        # fit_abstention's ``learned``: True, False or "auto"
        self.learned = learned_option(tc.abstention)
        self.features = features_for(tc.memory, tc.kmer_similarity)
        self.memory = self.nb = None
        if tc.memory and len(val_idx):
            self.memory = ReferenceMemory.build(
                torch.zeros(len(train_idx), 1), y[train_idx, -1],
                [seqs[i] for i in train_idx])
            if self.kmer:
                self.nb = self.memory.neighbours(self.vseqs, None, 64, 0)

    def _probs(self, logits: HeadLogits) -> Tuple[float, LeafProbs]:
        temp = fit_temperature(logits, self.y_val, self.labels.leaf_to_class,
                               self.labels.n_classes)
        return temp, LeafProbs(logits, temp)

    def score(self, net, z: torch.Tensor) -> dict:
        """Right calls of the classifier with ``net`` and the validation
        reads' embeddings ``z`` (their leaf logits come chunk by chunk)."""
        if len(self.pick) < len(z):
            z = z[torch.as_tensor(self.pick)]
        temp, p = self._probs(HeadLogits(z, net.heads[-1]))
        # "auto" chooses its confidence once, in calibrate(): the epoch is
        # chosen by the calibrated classifier's right calls, as "learned"
        # chooses it (so both train the same network for a seed)
        res = fit_abstention(
            p, self.nb, self.memory, self.labels, self.y_val, self.groups,
            epoch_grid(self.kmer), self.features if self.kmer else ("mass",),
            self.learned is not False)
        return {"right_call": res["score"], "temperature": temp}

    def calibrate(self, net, z: torch.Tensor, progress) -> dict:
        """Calibration of the classifier from the final network ``net`` and
        the embeddings ``z`` of all reference rows."""
        if not len(self.val_idx):
            return {"temperature": 1.0, "mixture": Mixture().to_dict(),
                    "calibrator": None, "features": ["mass"]}
        temp, p = self._probs(HeadLogits(z[self.val_idx], net.heads[-1]))
        memory = nb = None
        if self.memory is not None:
            memory = self.memory.with_embeddings(z[self.train_idx])
            nb = memory.neighbours(self.vseqs, z[self.val_idx],
                                   64 if self.kmer else 0, 32)
        grid = default_grid(self.kmer, True) if memory else [Mixture()]
        res = fit_abstention(p, nb, memory, self.labels, self.y_val,
                             self.groups, grid, self.features, self.learned,
                             progress=progress, evidence=self.evidence)
        self.evidence.update(kind=self.kind, features=list(self.features))
        res["temperature"] = temp
        progress(f"calibration: temperature {temp:.2f}")
        return res
