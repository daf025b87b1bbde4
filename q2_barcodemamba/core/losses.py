"""Training losses for the per-rank heads: hierarchical label smoothing,
class-frequency weights and a soft-target cross-entropy.

Hierarchical label smoothing (HLS) follows the idea used by MycoAI
(Romeijn et al. 2024, Mol. Ecol. Resour.) and BarcodeMamba+ (arXiv
2512.15931): instead of spreading the smoothing mass uniformly over all
classes, as plain label smoothing does, it is spread over the taxa that are
*related* to the true taxon, so that confusing two species of one genus costs
less than confusing two species of different phyla.

The exact rule implemented here, for the head of rank ``r`` and a read whose
true class at rank ``r`` is ``c``:

* ``c`` keeps ``1 - sum_{l<r} eps_l``;
* for every ancestor rank ``l < r`` the mass ``eps_l`` is spread over the
  classes ``k`` of rank ``r`` whose lineage prefix at rank ``l`` equals the
  one of ``c`` (the group, which contains ``c`` itself), proportionally to
  the reference counts ``n_k`` of those classes; classes with ``n_k = 0``
  receive nothing. Should the whole group have zero count (only possible for
  a class absent from the counts, e.g. a validation-only taxon), ``eps_l``
  goes to ``c`` so that the target still sums to 1;
* rank 0 has no ancestor: its target is one-hot (with HLS on, flat label
  smoothing is off on every head);
* a read with target ``-1`` (unknown) at rank ``r`` has no target there: its
  row is all zeros and :func:`cross_entropy_terms` ignores it.

Memory: materialising soft targets for 40k reads x 40k classes would need
billions of floats. The smoother stores instead, per rank and per ancestor
level, one integer *group id* per class (the index of its ancestor prefix)
and one float *share* per class (``n_k / total count of its group``). A
batch of targets is turned into a dense ``(B, n_r)`` tensor with a gather of
the true classes' group ids, a broadcast comparison and a multiply-add per
ancestor level: no Python loop over reads or classes.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed as ddp

Eps = Union[float, Sequence[float]]


def _eps_per_level(eps: Eps, n_ranks: int) -> List[float]:
    """Smoothing mass per ancestor level ``0 .. n_ranks - 2``.

    A scalar applies to every level. A sequence gives ``eps_l`` for ancestor
    level ``l``; it may have ``n_ranks - 1`` entries or ``n_ranks`` (the last
    one, for the deepest rank, is then unused: no rank lies below it).
    """
    n_levels = max(n_ranks - 1, 0)
    if np.ndim(eps) == 0:
        out = [float(eps)] * n_levels
    else:
        out = [float(e) for e in eps]
        if len(out) not in (n_levels, n_ranks):
            raise ValueError(
                f"eps has {len(out)} values; expected one per ancestor level "
                f"({n_levels}) or one per rank ({n_ranks}).")
        out = out[:n_levels]
    if any(not np.isfinite(e) or e < 0 for e in out):
        raise ValueError(f"eps values must be finite and >= 0, got {out}.")
    if sum(out) > 1.0 + 1e-12:
        raise ValueError(f"eps values sum to {sum(out)} > 1: the true class "
                         "would get a negative target.")
    return out


class RankSmoother:
    """Hierarchical soft targets for the head of one rank ``r`` (``r >= 1``).

    Buffers (``L = r`` ancestor levels, ``n`` classes at rank ``r``):
    ``group`` (L, n) long, ``share`` (L, n) float64, ``eps`` (L,) and
    ``keep`` (n,) -- the mass a read of class ``c`` keeps on ``c``
    (``1 - sum eps`` plus the ``eps_l`` of levels whose group has zero
    count). See the module docstring for the rule.
    """

    def __init__(self, group: np.ndarray, counts: np.ndarray,
                 eps: Sequence[float]):
        group = np.array(group, dtype=np.int64)  # a copy: compacted below
        counts = np.asarray(counts, dtype=np.float64)
        n_levels, n = group.shape
        if counts.shape != (n,) or len(eps) != n_levels:
            raise ValueError("group, counts and eps disagree in shape.")
        if (counts < 0).any():
            raise ValueError("class counts must be >= 0.")
        share = np.zeros((n_levels, n), dtype=np.float64)
        keep = np.full(n, 1.0 - float(sum(eps)), dtype=np.float64)
        for l in range(n_levels):
            # compact the group ids of this level to 0..G-1
            _, g = np.unique(group[l], return_inverse=True)
            group[l] = g.reshape(-1)
            total = np.bincount(group[l], weights=counts)[group[l]]
            empty = total <= 0
            share[l] = np.where(empty, 0.0, counts / np.where(empty, 1, total))
            keep += np.where(empty, eps[l], 0.0)
        self.n_classes = n
        self.eps = torch.as_tensor(np.asarray(eps, dtype=np.float64))
        self.group = torch.as_tensor(group)
        self.share = torch.as_tensor(share)
        self.keep = torch.as_tensor(keep)
        self._mass = {}

    def to(self, device) -> "RankSmoother":
        for name in ("eps", "group", "share", "keep"):
            setattr(self, name, getattr(self, name).to(device))
        self._mass = {}
        return self

    def __call__(self, t: torch.Tensor,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Dense soft targets (B, n) for true classes ``t`` (B,) long;
        rows with ``t < 0`` are all zeros."""
        if self.group.device != t.device:
            self.to(t.device)
        t = t.long()
        valid = t >= 0
        tc = t.clamp(min=0)
        out = torch.zeros(t.shape[0], self.n_classes, dtype=dtype,
                          device=t.device)
        mass = self._mass.get(dtype)
        if mass is None:  # eps_l * share_l, cached per dtype
            mass = (self.eps.unsqueeze(1) * self.share).to(dtype)
            self._mass[dtype] = mass
        for l in range(self.group.shape[0]):
            g = self.group[l]
            same = g.unsqueeze(0) == g[tc].unsqueeze(1)  # (B, n)
            out.addcmul_(same.to(dtype), mass[l].unsqueeze(0))
        out.scatter_add_(1, tc.unsqueeze(1),
                         self.keep[tc].to(dtype).unsqueeze(1))
        return out * valid.unsqueeze(1).to(dtype)


def _prefix_groups(classes_r: Sequence[str], r: int) -> np.ndarray:
    """(r, n) group ids of the classes of rank ``r``: at level ``l`` the
    index of their lineage prefix down to rank ``l``."""
    parts = [c.split(";") for c in classes_r]
    if any(len(p) != r + 1 for p in parts):
        raise ValueError(f"classes of rank {r} must be lineage prefixes "
                         f"with {r + 1} ';'-separated labels.")
    g = np.zeros((r, len(parts)), dtype=np.int64)
    for l in range(r):
        ids = {}
        g[l] = [ids.setdefault(";".join(p[:l + 1]), len(ids)) for p in parts]
    return g


def rank_smoothers(classes: Sequence[Sequence[str]],
                   counts: Sequence[np.ndarray], eps: Eps = 0.02
                   ) -> List[Optional[RankSmoother]]:
    """Hierarchical label smoothing of the rank heads (MycoAI /
    BarcodeMamba+): item ``r`` is the :class:`RankSmoother` of rank ``r``,
    or None where rank ``r`` needs none (rank 0, which has no ancestor, or
    all ``eps_l`` of its ancestors are 0): the one-hot target applies.

    ``classes[r]`` are the lineage-prefix strings of rank ``r``
    (``LabelEncoder.classes``); ``counts[r]`` the reference count of each.
    """
    n_ranks = len(classes)
    if len(counts) != n_ranks:
        raise ValueError("classes and counts differ in number of ranks.")
    levels = _eps_per_level(eps, n_ranks)
    out: List[Optional[RankSmoother]] = []
    for r in range(n_ranks):
        if r == 0 or not any(e > 0 for e in levels[:r]):
            out.append(None)
        else:
            out.append(RankSmoother(_prefix_groups(classes[r], r), counts[r],
                                    levels[:r]))
    return out


def leaf_smoother(leaf_to_class: np.ndarray, n_classes: Sequence[int],
                  counts: np.ndarray, eps: Eps = 0.02
                  ) -> Optional[RankSmoother]:
    """The same rule for the leaf head (whole reference lineages): the
    ancestor of leaf ``j`` at rank ``l`` is ``leaf_to_class[l, j]`` for the
    ranks above the deepest one; a leaf without a label at ``l`` is a group
    of its own there. None when every ``eps_l`` is 0."""
    n_ranks = len(n_classes)
    levels = _eps_per_level(eps, n_ranks)
    if not any(e > 0 for e in levels):
        return None
    groups = np.array(leaf_to_class, dtype=np.int64)
    for r in range(n_ranks):
        miss = groups[r] < 0
        groups[r, miss] = n_classes[r] + np.arange(miss.sum())
    return RankSmoother(groups[:-1], counts, levels)


def class_weights(y_col: np.ndarray, n_classes: int,
                  power: float = 0.5) -> torch.Tensor:
    """Class-frequency weights ``w_c ∝ n_c ** -power`` (0 if ``n_c = 0``).

    ``power=0.5`` is the inverse-square-root weighting, a compromise between
    no re-weighting (0) and full inverse frequency (1) for the long-tailed
    class distributions of barcode references. Normalised so that the
    count-weighted mean over the training reads, ``sum n_c w_c / sum n_c``,
    is 1 and the loss keeps its scale. ``-1`` entries are ignored; with no
    known target at all every weight is 1.
    """
    y_col = np.asarray(y_col, dtype=np.int64)
    n = np.bincount(y_col[y_col >= 0], minlength=n_classes).astype(np.float64)
    if n.shape[0] != n_classes:
        raise ValueError("y_col holds a class index >= n_classes.")
    total = n.sum()
    if total == 0:
        return torch.ones(n_classes, dtype=torch.float32)
    w = np.zeros(n_classes, dtype=np.float64)
    present = n > 0
    w[present] = n[present] ** -float(power)
    w *= total / (n * w).sum()
    return torch.as_tensor(w, dtype=torch.float32)


def cross_entropy_terms(logits: torch.Tensor, target: torch.Tensor,
                        soft: Optional[torch.Tensor] = None,
                        weight: Optional[torch.Tensor] = None,
                        label_smoothing: float = 0.0
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(sum_i w_i l_i, sum_i w_i)`` of one head over a batch: the
    numerator and denominator of its weighted mean loss.

    ``target`` (B,) holds the true class, -1 where unknown (``w_i = 0``).
    ``l_i = -sum_c soft_ic log softmax(logits_i)_c`` with ``soft`` targets
    (B, n) (e.g. from a :class:`RankSmoother`), else the cross-entropy to
    ``target`` with flat ``label_smoothing``. ``w_i = weight[target_i]``
    with class ``weight`` (n,), else 1. Keeping the two sums apart lets the
    caller normalise over all processes of a data-parallel run.
    """
    if soft is not None:
        logp = F.log_softmax(logits.float(), dim=-1)
        soft = soft.to(logp.dtype)
        per = -torch.where(soft > 0, soft * logp,
                           torch.zeros_like(logp)).sum(-1)
    else:
        per = F.cross_entropy(logits.float(), target.clamp(min=0),
                              label_smoothing=label_smoothing,
                              reduction="none")
    w = (target >= 0).float()
    if weight is not None:
        w = w * weight[target.clamp(min=0)]
    return (w * per).sum(), w.sum()


def mean_over_heads(nums: Sequence[torch.Tensor],
                    dens: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over heads of ``num_h / den_h``, leaving out heads without a
    known target (``den_h = 0``).

    Under DDP the denominators are summed over processes (and the result
    scaled by the world size, which DDP's gradient averaging undoes), so N
    processes compute exactly the single-process loss.
    """
    den = torch.stack(list(dens))
    scale = 1.0
    if ddp.is_distributed():
        den = den.detach().clone()
        torch.distributed.all_reduce(den)
        scale = float(ddp.world_size())
    use = den > 0
    per_head = torch.stack(list(nums)) / den.clamp(min=1e-12)
    n_used = use.sum().clamp(min=1)
    return scale * (per_head * use).sum() / n_used


class MultiTaskLoss:
    """The training loss of the classification heads: the mean over heads
    of each head's weighted cross-entropy (:func:`cross_entropy_terms`,
    :func:`mean_over_heads`); target -1 is ignored.

    Per head: hierarchical label smoothing when ``hls_epsilon > 0`` (every
    head: :func:`rank_smoothers`, :func:`leaf_smoother`; rank 0 has no
    ancestor and gets the one-hot target), else flat ``label_smoothing``;
    and class weights ``w_c ~ n_c^-power`` when ``class_weight_power > 0``
    (:func:`class_weights`). ``classes``: the rank classes of the
    :class:`.taxonomy.LabelEncoder`; ``leaf_to_class`` (R, n_leaf) its leaf
    map; ``train_y`` (n, R + 1) the training targets (ranks, then leaf);
    ``heads``: the columns the network predicts (default: all).
    """

    def __init__(self, tcfg, classes: Sequence[Sequence[str]],
                 leaf_to_class: np.ndarray, train_y: np.ndarray, device,
                 heads: Optional[Sequence[int]] = None):
        n_ranks = len(classes)
        self.heads = list(range(n_ranks + 1)) if heads is None else list(heads)
        n_classes = [len(c) for c in classes] + [leaf_to_class.shape[1]]
        counts = [np.bincount(train_y[:, h][train_y[:, h] >= 0], minlength=n)
                  for h, n in enumerate(n_classes)]
        smoothers = [None] * (n_ranks + 1)
        self.flat = tcfg.label_smoothing
        if tcfg.hls_epsilon > 0:
            self.flat = 0.0   # HLS replaces flat smoothing on every head
            smoothers = rank_smoothers(classes, counts[:n_ranks],
                                       tcfg.hls_epsilon) + [leaf_smoother(
                leaf_to_class, n_classes[:n_ranks], counts[-1],
                tcfg.hls_epsilon)]
            smoothers = [sm.to(device) if sm is not None else None
                         for sm in smoothers]
        weights = [None] * (n_ranks + 1)
        if tcfg.class_weight_power > 0:
            weights = [class_weights(train_y[:, h], n,
                                     tcfg.class_weight_power).to(device)
                       for h, n in enumerate(n_classes)]
        self.smoothers = [smoothers[h] for h in self.heads]
        self.weights = [weights[h] for h in self.heads]

    def terms(self, logits: List[torch.Tensor], targets: torch.Tensor
              ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Per-head numerators and denominators (this process only)."""
        nums, dens = [], []
        for h, lg in enumerate(logits):
            t, sm = targets[:, h], self.smoothers[h]
            num, den = cross_entropy_terms(
                lg, t, None if sm is None else sm(t, dtype=torch.float32),
                self.weights[h], self.flat)
            nums.append(num)
            dens.append(den)
        return nums, dens

    def __call__(self, logits: List[torch.Tensor], targets: torch.Tensor
                 ) -> torch.Tensor:
        """logits: per head (B, n_h); targets: (B, n_heads) long, columns
        in the order of the network's heads."""
        return mean_over_heads(*self.terms(logits, targets))


def supervised_contrastive(z: torch.Tensor, groups: Sequence[torch.Tensor],
                           weights: Sequence[float], temperature: float = 0.1
                           ) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "SupCon") over the
    batch, summed over grouping levels with ``weights``.

    ``z`` (B, D) embeddings (L2-normalised here); each ``groups[l]`` (B,)
    long holds the read's taxon at one level (e.g. species, genus), -1 for
    unknown. For every read with at least one other read of its taxon in
    the batch, the loss is the mean over those positives of
    ``-log softmax_j(z_i . z_j / temperature)`` over all other reads j. It
    pulls reads of one species (and, with a smaller weight, one genus)
    together in the embedding the reference memory searches (as DNABERT-S
    does for DNA embeddings, arXiv 2402.08777). Zero when no read has a
    positive.
    """
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logp = (z @ z.T / temperature).masked_fill(eye, -1e9).log_softmax(1)
    total = z.new_zeros(())
    for g, w in zip(groups, weights):
        pos = (g[:, None] == g[None, :]) & (g[:, None] >= 0) & ~eye
        npos = pos.sum(1)
        has = npos > 0
        if w > 0 and bool(has.any()):
            per_read = -(logp * pos).sum(1)[has] / npos[has]
            total = total + w * per_read.mean()
    return total
