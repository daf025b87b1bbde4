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
* rank 0 has no ancestor: its target is one-hot;
* a read with target ``-1`` (unknown) at rank ``r`` has no target there: its
  row is all zeros and :func:`soft_cross_entropy` ignores it.

Memory: materialising soft targets for 40k reads x 40k classes would need
billions of floats. The smoother stores instead, per rank and per ancestor
level, one integer *group id* per class (the index of its ancestor prefix)
and one float *share* per class (``n_k / total count of its group``). A
batch of targets is turned into a dense ``(B, n_r)`` tensor with a gather of
the true classes' group ids, a broadcast comparison and a multiply-add per
ancestor level: no Python loop over reads or classes.
"""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

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


class HierarchicalSmoother:
    """Hierarchical label smoothing for all heads (MycoAI / BarcodeMamba+).

    Behaves like a list of length ``n_ranks``: item ``r`` is a
    :class:`RankSmoother`, or ``None`` when rank ``r`` needs no smoothing
    (rank 0, or all ``eps_l`` of its ancestors are zero), i.e. the hard
    one-hot target applies.

    ``classes[r]`` are the lineage-prefix strings of rank ``r``
    (``LabelEncoder.classes``); ``counts[r]`` the reference count of each.
    """

    def __init__(self, classes: Sequence[Sequence[str]],
                 counts: Sequence[np.ndarray], eps: Eps = 0.02):
        n_ranks = len(classes)
        if len(counts) != n_ranks:
            raise ValueError("classes and counts differ in number of ranks.")
        groups = []
        for r in range(n_ranks):
            parts = [c.split(";") for c in classes[r]]
            if any(len(p) != r + 1 for p in parts):
                raise ValueError(f"classes of rank {r} must be lineage "
                                 f"prefixes with {r + 1} ';'-separated "
                                 "labels.")
            g = np.zeros((r, len(parts)), dtype=np.int64)
            for l in range(r):
                ids = {}
                g[l] = [ids.setdefault(";".join(p[:l + 1]), len(ids))
                        for p in parts]
            groups.append(g)
        self._build(groups, counts, eps)

    def _build(self, groups: Sequence[np.ndarray],
               counts: Sequence[np.ndarray], eps: Eps) -> None:
        n_ranks = len(groups)
        self.eps = _eps_per_level(eps, n_ranks)
        self.n_classes = [int(np.asarray(c).shape[0]) for c in counts]
        self.ranks: List[Optional[RankSmoother]] = []
        for r in range(n_ranks):
            lv = self.eps[:r]
            if r == 0 or not any(e > 0 for e in lv):
                self.ranks.append(None)
            else:
                self.ranks.append(RankSmoother(groups[r], counts[r], lv))

    @classmethod
    def from_encoder(cls, encoder, y: np.ndarray, eps: Eps = 0.02
                     ) -> "HierarchicalSmoother":
        """From a ``LabelEncoder`` and training targets ``y`` (n, R)."""
        counts = [np.bincount(y[:, r][y[:, r] >= 0], minlength=n)
                  for r, n in enumerate(encoder.n_classes)]
        return cls(encoder.classes, counts, eps)

    @classmethod
    def from_targets(cls, y: np.ndarray, n_classes: Sequence[int],
                     eps: Eps = 0.02) -> "HierarchicalSmoother":
        """From targets alone: the ancestor of class ``c`` at rank ``l`` is
        read off ``y[i, l]`` of the reads with ``y[i, r] == c`` (classes are
        lineage prefixes, so it is unique). Classes absent from ``y`` get
        count 0 and a group of their own."""
        y = np.asarray(y, dtype=np.int64)
        n_ranks = len(n_classes)
        if y.ndim != 2 or y.shape[1] != n_ranks:
            raise ValueError(f"y must have shape (n, {n_ranks}).")
        groups, counts = [], []
        for r, n in enumerate(n_classes):
            col = y[:, r]
            ok = col >= 0
            counts.append(np.bincount(col[ok], minlength=n))
            seen = np.zeros(n, dtype=bool)
            seen[col[ok]] = True
            g = np.zeros((r, n), dtype=np.int64)
            for l in range(r):
                anc = y[ok, l]
                if (anc < 0).any():
                    raise ValueError(f"a read is known at rank {r} but "
                                     f"unknown at its ancestor rank {l}.")
                gl = np.full(n, -1, dtype=np.int64)
                gl[col[ok]] = anc
                if (gl[col[ok]] != anc).any():
                    raise ValueError(f"a class of rank {r} has more than one "
                                     f"ancestor at rank {l}.")
                n_unseen = int((~seen).sum())
                gl[~seen] = n_classes[l] + np.arange(n_unseen)
                g[l] = gl
            groups.append(g)
        obj = cls.__new__(cls)
        obj._build(groups, counts, eps)
        return obj

    def __len__(self) -> int:
        return len(self.ranks)

    def __getitem__(self, r: int) -> Optional[RankSmoother]:
        return self.ranks[r]

    def to(self, device) -> "HierarchicalSmoother":
        for s in self.ranks:
            if s is not None:
                s.to(device)
        return self

    def targets(self, y: torch.Tensor, r: int,
                dtype: torch.dtype = torch.float32) -> Optional[torch.Tensor]:
        """Soft targets (B, n_r) for rank ``r`` from a batch ``y`` of shape
        (B, R) (or the rank's column (B,)); ``None`` where rank ``r`` is not
        smoothed (use the hard targets)."""
        s = self.ranks[r]
        if s is None:
            return None
        return s(y[:, r] if y.dim() == 2 else y, dtype)

    def dense(self, y: torch.Tensor, r: int,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Like :meth:`targets` but always a tensor (one-hot where the rank
        is not smoothed; zero rows for ``-1``)."""
        t = self.targets(y, r, dtype)
        if t is not None:
            return t
        col = (y[:, r] if y.dim() == 2 else y).long()
        out = torch.zeros(col.shape[0], self.n_classes[r], dtype=dtype,
                          device=col.device)
        ok = col >= 0
        out[ok.nonzero().squeeze(1), col[ok]] = 1
        return out


def hls_targets(y: np.ndarray, n_classes: List[int],
                eps: Eps = 0.02) -> HierarchicalSmoother:
    """Hierarchical label smoothing targets for training targets ``y`` (n, R).

    Returns a :class:`HierarchicalSmoother` -- a list-like of one
    :class:`RankSmoother` (or ``None`` = one-hot) per rank -- rather than
    per-read vectors, so memory is O(R^2 x classes) instead of
    O(reads x classes); call ``smoother.targets(batch_y, r)`` per batch.
    """
    return HierarchicalSmoother.from_targets(y, n_classes, eps)


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


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor,
                       weight: Optional[torch.Tensor] = None,
                       hard: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean of ``-sum_c t_c log softmax(logits)_c`` over the reads.

    Rows of ``soft_targets`` that sum to 0 (unknown targets) are ignored.
    With ``weight`` (n,), read ``i`` counts with weight ``weight[h_i]`` where
    ``h_i`` is its hard class (``hard`` if given, else the argmax of its
    target) and the result is ``sum w_i l_i / sum w_i`` -- for one-hot
    targets exactly ``F.cross_entropy(logits, h, weight=weight)``. Returns 0
    (still differentiable) when no read counts.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    t = soft_targets.to(logp.dtype)
    per_read = -torch.where(t > 0, t * logp, torch.zeros_like(logp)).sum(-1)
    w = (t.sum(-1) > 0).to(logp.dtype)
    if weight is not None:
        h = t.argmax(-1) if hard is None else hard.long().clamp(min=0)
        w = w * weight.to(logp.dtype)[h]
    # no host sync: with no counted read the numerator is 0 and so is the loss
    denom = w.sum().clamp_min(torch.finfo(logp.dtype).tiny)
    return (w * per_read).sum() / denom
