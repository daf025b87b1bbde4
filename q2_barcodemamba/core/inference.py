"""From leaf-head logits to consistent lineages with confidences.

Confidence of a taxon is the summed (temperature-scaled) probability of all
reference lineages below it, as ``classify-sklearn`` does for its leaf
classes (Bokulich et al. 2018). Lineages are chosen top-down: at each rank
the child of the already chosen taxon with the largest summed probability,
so every reported species belongs to the reported genus. The lineage is cut
at the deepest rank whose confidence is >= the threshold.
"""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .runtime import autocast

UNASSIGNED = "Unassigned"
# confidence thresholds scored by calibration and the evaluation views
THRESHOLDS = [round(0.05 * i, 2) for i in range(21)]
# classify-sklearn's default; used when a classifier has no calibration
DEFAULT_CONFIDENCE = 0.7


def hierarchical_walk(leaf_probs: torch.Tensor, leaf_to_class: torch.Tensor,
                      n_classes: Sequence[int]
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Greedy top-down walk.

    leaf_probs: (B, n_leaf) probabilities; leaf_to_class: (R, n_leaf) long,
    -1 where a leaf has no label at that rank. Returns chosen class index
    (B, R) (-1 once no reference lineage goes deeper) and its confidence
    (B, R) (0 there), in ``leaf_probs``' dtype. A classifier keeps a
    :class:`.walk.LeafTree` and calls its ``walk`` (the same result).
    """
    from .walk import LeafTree
    tree = LeafTree(np.asarray(leaf_to_class), n_classes)
    chosen, conf = tree.walk(leaf_probs)
    return chosen, conf.to(leaf_probs.dtype)


def truncate(chosen: np.ndarray, conf: np.ndarray, classes: Sequence[Sequence[str]],
             threshold: Optional[float]) -> List[Tuple[str, float]]:
    """(taxon, confidence) per read: deepest rank with conf >= threshold.

    ``threshold=None`` (``confidence='disable'``) keeps the deepest rank the
    walk reached. Reads failing even the top rank are ``Unassigned`` with
    confidence 1 - the top rank's confidence (how sure the classifier is
    that no rank can be called; classify-sklearn reports the same).
    """
    out = []
    R = chosen.shape[1]
    for i in range(chosen.shape[0]):
        depth = -1
        for r in range(R):
            if chosen[i, r] < 0:
                break
            if threshold is not None and conf[i, r] < threshold:
                break
            depth = r
        if depth < 0:
            out.append((UNASSIGNED, 1.0 - float(conf[i, 0])))
        else:
            out.append((classes[depth][chosen[i, depth]], float(conf[i, depth])))
    return out


def target_depth_and_class(y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Deepest known rank (-1 if none) and its class for targets (n, R)."""
    known = y >= 0
    depth = np.where(known.any(1), known.shape[1] - 1 - np.argmax(
        known[:, ::-1], axis=1), -1)
    cls = np.where(depth >= 0, y[np.arange(len(y)), np.maximum(depth, 0)], -1)
    return depth, cls


def right_call_curve(chosen: np.ndarray, conf: np.ndarray, y: np.ndarray,
                     thresholds: Sequence[float],
                     weight: Optional[np.ndarray] = None) -> List[float]:
    """Share of reads whose reported depth is exactly the deepest knowable
    rank and correct there, for each threshold (a weighted share with
    ``weight`` (n,)).

    y: (n, R) rank targets over the classifier's classes (-1 = not in the
    reference), so a held-out unseen species is right at its genus.
    """
    depth_true, cls_true = target_depth_and_class(y)
    rates = []
    for t in thresholds:
        ok_r = (conf >= t) & (chosen >= 0)
        # reported depth = last rank of the leading run of passing ranks
        run = np.cumprod(ok_r, axis=1).astype(bool)
        depth = run.sum(1) - 1
        cls_at = np.where(depth >= 0, chosen[np.arange(len(y)),
                                             np.maximum(depth, 0)], -1)
        right = (depth == depth_true) & ((depth < 0) | (cls_at == cls_true))
        if not len(y):
            rates.append(0.0)
        elif weight is None:
            rates.append(float(right.mean()))
        else:
            rates.append(float(np.average(right, weights=weight)))
    return rates


CHUNK = 512   # reads per chunk of leaf logits (chunk x n_leaf floats)
CHUNK_ELEMENTS = 1 << 24   # rows x lineages per chunk: 64 MiB of float32


def chunk_rows(n_leaf: int, size: int = CHUNK) -> int:
    """Rows per chunk over ``n_leaf`` lineages: ``size``, fewer when rows x
    lineages would pass :data:`CHUNK_ELEMENTS` (512 rows up to 32,768
    lineages; 40 at 417,000, where 512 rows' float64 sums were 1.7 GiB
    each and a 10x UNITE fit peaked at 20 GiB)."""
    return max(1, min(size, CHUNK_ELEMENTS // max(1, n_leaf)))


class HeadLogits:
    """Leaf logits of n reads, computed chunk by chunk from their pooled
    embeddings ``z`` (n, D) by the network's leaf ``head``, so that a
    validation split of a UNITE-size reference never holds an
    (n, n_leaf) matrix (tens of GiB at 10^5 lineages): memory is
    :data:`CHUNK` x n_leaf floats. ``bf16``: the head under bfloat16
    autocast (``classify --p-precision bf16``). ``parent``: the genus
    head, for callers that shortlist lineages (:mod:`.shortlist`)."""

    def __init__(self, z: torch.Tensor, head: torch.nn.Module,
                 bf16: bool = False,
                 parent: Optional[torch.nn.Module] = None):
        self.z, self.head, self.bf16, self.parent = z, head, bf16, parent

    def __len__(self) -> int:
        return len(self.z)

    @property
    def width(self) -> int:
        return self.head.out_features

    @torch.no_grad()
    def chunks(self, size: int = CHUNK):
        dev = next(self.head.parameters()).device
        for s in range(0, len(self.z), size):
            with autocast(dev, self.bf16):
                lg = self.head(self.z[s:s + size].to(dev))
            yield slice(s, s + size), lg.float().cpu()


class LeafProbs:
    """Temperature-scaled leaf probabilities, chunk by chunk, of a tensor
    of logits or a :class:`HeadLogits`."""

    def __init__(self, logits, temperature: float = 1.0):
        self.logits, self.temperature = logits, float(temperature)

    def __len__(self) -> int:
        return len(self.logits)

    @property
    def width(self) -> int:
        return width(self.logits)

    def chunks(self, size: int = CHUNK):
        for sl, lg in chunks_of(self.logits, size):
            yield sl, torch.softmax(lg.float() / self.temperature, dim=1)


def width(values) -> int:
    """n_leaf of an (n, n_leaf) tensor or a chunked source."""
    return values.shape[1] if isinstance(values, torch.Tensor) \
        else values.width


def chunks_of(values, size: int = CHUNK):
    """(slice, rows) over an (n, n_leaf) tensor or a chunked source
    (:class:`HeadLogits`, :class:`LeafProbs`), at most ``size`` rows and
    :data:`CHUNK_ELEMENTS` values per chunk (:func:`chunk_rows`)."""
    size = chunk_rows(width(values), size)
    if isinstance(values, torch.Tensor):
        for s in range(0, len(values), size):
            yield slice(s, s + size), values[s:s + size]
    else:
        yield from values.chunks(size)


TEMPERATURES = np.exp(np.linspace(math.log(0.25), math.log(8.0), 57))


def fit_temperature(logits, y: np.ndarray,
                    leaf_to_class: torch.Tensor, n_classes: Sequence[int]
                    ) -> float:
    """Temperature minimising the NLL of each read's deepest known taxon.

    The probability of that taxon is the summed leaf probability below it,
    so held-out unseen species calibrate the genus confidence. ``logits``:
    (n, n_leaf) tensor or a chunked source (:class:`HeadLogits`). Search
    over 57 log-spaced T in [0.25, 8]: every 4th first, then the grid
    points next to the best of those (22 evaluations instead of 57, the
    same T when the NLL is unimodal in log T); deterministic.
    """
    depth, cls = target_depth_and_class(y)
    keep = depth >= 0
    if not keep.any():
        return 1.0
    l2c = torch.as_tensor(np.asarray(leaf_to_class))

    def nll_at(ks: Sequence[int]) -> np.ndarray:
        nll = np.zeros(len(ks))
        for sl, lg in chunks_of(logits):
            kp = keep[sl]
            if not kp.any():
                continue
            lg = lg[torch.as_tensor(kp)].float()
            d = torch.as_tensor(depth[sl][kp])
            c = torch.as_tensor(cls[sl][kp])
            # member (b, n_leaf): leaf j lies below read i's target taxon
            member = l2c[d] == c.unsqueeze(1)
            for j, k in enumerate(ks):
                # log of the summed softmax below the target: two passes
                x = lg / float(TEMPERATURES[k])
                ll = torch.logsumexp(x.masked_fill(~member, -math.inf), 1) \
                    - torch.logsumexp(x, 1)
                nll[j] += torch.clamp(-ll, max=50.0).sum().item()
        return nll

    coarse = list(range(0, len(TEMPERATURES), 4))
    scores = dict(zip(coarse, nll_at(coarse)))
    best = min(scores, key=lambda k: (scores[k], k))
    fine = [k for k in range(best - 3, best + 4)
            if 0 <= k < len(TEMPERATURES) and k not in scores]
    scores.update(zip(fine, nll_at(fine)))
    best = min(scores, key=lambda k: (scores[k], k))
    return float(TEMPERATURES[best])
