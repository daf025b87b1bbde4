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
    (B, R) (0 there).
    """
    B = leaf_probs.shape[0]
    R = leaf_to_class.shape[0]
    mask = torch.ones_like(leaf_probs, dtype=torch.bool)        # (B, n_leaf)
    chosen = torch.full((B, R), -1, dtype=torch.long)
    conf = torch.zeros((B, R), dtype=leaf_probs.dtype)
    for r in range(R):
        cls_r = leaf_to_class[r]                                  # (n_leaf,)
        valid = cls_r >= 0
        mass = torch.zeros((B, n_classes[r]), dtype=leaf_probs.dtype)
        mass.index_add_(1, cls_r[valid], (leaf_probs * mask)[:, valid])
        best_p, best_c = mass.max(dim=1)                          # (B,)
        alive = best_p > 0
        chosen[:, r] = torch.where(alive, best_c, torch.full_like(best_c, -1))
        conf[:, r] = torch.where(alive, best_p, torch.zeros_like(best_p))
        mask = mask & (cls_r.unsqueeze(0) == chosen[:, r:r + 1])
    return chosen, conf


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
                     thresholds: Sequence[float]) -> List[float]:
    """Share of reads whose reported depth is exactly the deepest knowable
    rank and correct there, for each threshold.

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
        rates.append(float(right.mean()) if len(y) else 0.0)
    return rates


def fit_temperature(logits: torch.Tensor, y: np.ndarray,
                    leaf_to_class: torch.Tensor, n_classes: Sequence[int]
                    ) -> float:
    """Temperature minimising the NLL of each read's deepest known taxon.

    The probability of that taxon is the summed leaf probability below it,
    so held-out unseen species calibrate the genus confidence. Grid search
    over T in [0.25, 8] (log-spaced): robust and deterministic.
    """
    depth, cls = target_depth_and_class(y)
    keep = depth >= 0
    if not keep.any():
        return 1.0
    logits, depth, cls = logits[keep].float(), depth[keep], cls[keep]
    depth_t, cls_t = torch.as_tensor(depth), torch.as_tensor(cls)
    temps = np.exp(np.linspace(math.log(0.25), math.log(8.0), 57))
    nll = np.zeros(len(temps))
    for start in range(0, len(logits), 1024):       # bounded memory
        sl = slice(start, start + 1024)
        # member (b, n_leaf): leaf j lies below read i's target taxon
        member = leaf_to_class[depth_t[sl]] == cls_t[sl].unsqueeze(1)
        for k, t in enumerate(temps):
            logp = torch.log_softmax(logits[sl] / float(t), dim=1)
            ll = torch.logsumexp(logp.masked_fill(~member, -math.inf), 1)
            nll[k] += torch.clamp(-ll, max=50.0).sum().item()
    return float(temps[int(np.argmin(nll))])
