"""The top-down lineage walk at a cost that does not grow with the number
of reference lineages.

A UNITE reference has tens of thousands of leaf lineages (distinct
reference lineages), most with one read. Summing every leaf's probability
into its taxon at every rank, for every read, made the walk the most
expensive step of ``classify`` (~120 reads/s with 41,700 leaves).

:class:`LeafTree` orders the leaves so that the leaves below any taxon
are one contiguous run (a lexicographic sort of their class indices per
rank), so the summed probability of a taxon is the difference of two
entries of the row's cumulative sum. :meth:`LeafTree.walk` then works on
the ``k`` most probable leaves of each read only:

1. at each rank, the candidate taxa are those of the top-``k`` leaves
   below the taxon chosen at the rank above; each candidate's summed
   probability is exact (from the cumulative sum, not from the top-``k``
   leaves alone);
2. whatever is not a candidate shares at most the parent's mass minus the
   candidates' masses minus the mass of leaves that end at the parent (an
   exact bound). When the best candidate is heavier than that bound, no
   other taxon can beat it and the choice is the one the full walk makes;
3. reads where the bound does not settle a rank (a flat distribution)
   fall back to the full walk over every taxon (:meth:`LeafTree.walk_full`).

Calls and confidences are therefore those of the full walk (same
numbers); the top-``k`` shortcut only decides how much work proves them.
The cost per read is one pass over the leaves (the softmax, ``topk`` and
the cumulative sum, vectorised) plus O(k x ranks), instead of a summation
over every leaf at every rank. This is the pruning that beam search uses
for hierarchical softmaxes (Morin & Bengio 2005), made exact by the bound.
"""
import threading
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from .topk import topk

TOP_K = 16     # leaves per read that nominate the candidate taxa (with 16
               # no read of 2,000 on UNITE ITS2 needed the full walk; 64
               # cost 0.05 ms per read more for the same result)
_TOL = 1e-9    # float64 rounding allowance of the bound


class LeafTree:
    """Leaf order and taxon ranges of a label encoder's ``leaf_to_class``
    (R, n_leaf), -1 where a leaf has no label at that rank.

    ``order``: leaf indices in tree order; for rank r and class c,
    ``start[r][c]:end[r][c]`` are the positions (in that order) of the
    leaves below c, of which the first ``n_end[r][c]`` end at c (no label
    at rank r + 1); ``parent[r][c]`` is c's class at rank r - 1.
    """

    def __init__(self, leaf_to_class: np.ndarray,
                 n_classes: Sequence[int]):
        l2c = np.asarray(leaf_to_class, dtype=np.int64)
        R, n = l2c.shape
        self.n_leaves, self.n_ranks = n, R
        self.n_classes = [int(c) for c in n_classes]
        # -1 (no label) sorts first, so leaves ending at a taxon lead its run
        order = np.lexsort(l2c[::-1]) if n else np.zeros(0, np.int64)
        srt = l2c[:, order]
        pos = np.arange(n)
        start, end, n_end, parent = [], [], [], []
        for r in range(R):
            c, ok = srt[r], srt[r] >= 0
            cnt = np.bincount(c[ok], minlength=self.n_classes[r])
            s = np.full(self.n_classes[r], n, dtype=np.int64)
            np.minimum.at(s, c[ok], pos[ok])
            s[cnt == 0] = 0
            e = s + cnt
            if (np.bincount(c[ok], weights=pos[ok],
                            minlength=self.n_classes[r])
                    != cnt * (s + e - 1) / 2).any():
                raise ValueError("leaf_to_class is not a tree: the leaves of "
                                 f"a rank-{r} class are not one run.")
            start.append(s)
            end.append(e)
            if r + 1 < R:
                ends_here = ok & (srt[r + 1] < 0)
                n_end.append(np.bincount(c[ends_here],
                                         minlength=self.n_classes[r]))
            else:
                n_end.append(cnt)
            par = np.full(self.n_classes[r], -1, dtype=np.int64)
            if r > 0:
                has = cnt > 0
                par[has] = srt[r - 1][s[has]]
            parent.append(par)
        t = torch.as_tensor
        self.order = t(order)
        # a label encoder fitted by this package lists its leaves in tree
        # order already (LabelEncoder.fit): the gather into tree order
        # (0.57 ms of the walk's ~1 ms per read at 417,000 leaves) is skipped
        self.identity = bool(np.array_equal(order, np.arange(n)))
        self.leaf_to_class = t(l2c)
        self.start = [t(s) for s in start]
        self.end = [t(e) for e in end]
        # first position of a class's children (after the leaves ending there)
        self.child_start = [t(s + ne) for s, ne in zip(start, n_end)]
        self.parent = [t(p) for p in parent]
        # numpy copies for walk()'s rank loop
        self._np = {"l2c": l2c, "start": start, "end": end,
                    "child_start": [s + ne for s, ne in zip(start, n_end)]}
        self.n_full = 0     # reads the last walk() settled by the full walk
        self._ws = threading.local()    # cumulative()'s buffers, per thread
        self._orders: Dict[torch.device, torch.Tensor] = {}

    def cumulative(self, p: torch.Tensor) -> torch.Tensor:
        """(B, n_leaf) float64 cumulative sums of ``p`` in tree order.

        For a float32 ``p`` on the CPU the result lives in buffers that the
        next call in the same thread overwrites (copy it to keep it): at
        UNITE size a batch's float64 sums exceed the allocator's mmap
        threshold, and a fresh allocation per batch, page faults included,
        cost 4x the sums themselves."""
        if p.dtype != torch.float32 or p.device.type != "cpu":
            if not self.identity:
                order = self._orders.get(p.device)
                if order is None:   # copied to a GPU once, not per batch
                    order = self._orders[p.device] = self.order.to(p.device)
                p = torch.index_select(p, 1, order)
            return torch.cumsum(p.double(), 1)
        B, n = p.shape
        bufs = getattr(self._ws, "bufs", None)
        if bufs is None or bufs[1].shape[0] < B or bufs[1].shape[1] != n:
            bufs = self._ws.bufs = (
                None if self.identity else torch.empty((B, n)),
                torch.empty((B, n), dtype=torch.float64))
        f64 = bufs[1][:B]
        if self.identity:
            f64.copy_(p)
        else:
            # index_select, then the conversion, then cumsum: 3x faster
            # than fancy indexing and a cumsum that converts on the fly
            f32 = bufs[0][:B]
            torch.index_select(p, 1, self.order, out=f32)
            f64.copy_(f32)
        return f64.cumsum_(1)

    @staticmethod
    def _range(cs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
               ) -> torch.Tensor:
        """Sum of positions ``lo:hi`` (index tensors shaped like the
        result, (B, M) or (M,) broadcast over the rows) from the
        cumulative sums ``cs``; 0 for an empty range."""
        if lo.dim() == 1:
            upper = torch.index_select(cs, 1, (hi - 1).clamp(min=0))
            lower = torch.index_select(cs, 1, (lo - 1).clamp(min=0))
        else:
            upper = cs.gather(1, (hi - 1).clamp(min=0))
            lower = cs.gather(1, (lo - 1).clamp(min=0))
        lower = lower.masked_fill(lo <= 0, 0.0)
        return (upper - lower).masked_fill(hi <= lo, 0.0)

    def mass(self, cs: torch.Tensor, r: int, cls: torch.Tensor
             ) -> torch.Tensor:
        """Summed probability of rank-``r`` classes ``cls`` (B, M) from the
        cumulative sums ``cs``; 0 where ``cls`` < 0."""
        c = cls.clamp(min=0)
        m = self._range(cs, self.start[r][c], self.end[r][c])
        return torch.where(cls >= 0, m, torch.zeros_like(m))

    def chosen_mass(self, p: torch.Tensor, chosen: np.ndarray) -> np.ndarray:
        """Summed probability (B, R) of the classes ``chosen`` (B, R)."""
        cs = self.cumulative(p)
        ch = torch.as_tensor(chosen)
        return torch.stack([self.mass(cs, r, ch[:, r:r + 1])[:, 0]
                            for r in range(self.n_ranks)], 1).numpy() \
            if self.n_ranks else np.zeros((len(chosen), 0))

    def walk_full(self, p: torch.Tensor, cs: torch.Tensor = None
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Greedy top-down walk over every taxon: at each rank the child of
        the taxon chosen above with the largest summed probability (the
        lowest class index on a tie). Returns chosen class (B, R), -1 once
        no reference lineage goes deeper, and its summed probability
        (B, R) float64 (0 there)."""
        if cs is None:
            cs = self.cumulative(p)
        B, R = p.shape[0], self.n_ranks
        chosen = torch.full((B, R), -1, dtype=torch.long)
        conf = torch.zeros((B, R), dtype=torch.float64)
        for r in range(R):
            m = self._range(cs, self.start[r], self.end[r])      # (B, C_r)
            if r > 0:
                m = m.masked_fill(self.parent[r][None, :]
                                  != chosen[:, r - 1:r], -1.0)
            best_p, best_c = m.max(dim=1)
            alive = best_p > 0
            chosen[:, r] = torch.where(alive, best_c,
                                       torch.full_like(best_c, -1))
            conf[:, r] = torch.where(alive, best_p,
                                     torch.zeros_like(best_p))
        return chosen, conf

    def walk(self, p: torch.Tensor, k: int = TOP_K
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The result of :meth:`walk_full`, proven on the top-``k`` leaves
        of each read (see the module text); reads the bound does not settle
        go through :meth:`walk_full`. ``n_full`` counts them. The rank loop
        works on (B, k) numpy arrays: torch's per-operation overhead made
        it ~2.5 ms per call, which a block of 5 reads (the walk at 417,000
        lineages, :func:`.abstention.walk_rows`) could not amortise."""
        B, R = p.shape[0], self.n_ranks
        self.n_full = 0
        if B == 0 or self.n_leaves <= 2 * k:
            self.n_full = B
            return self.walk_full(p)
        cs_t = self.cumulative(p)
        cs = cs_t.cpu().numpy()
        top = topk(p, k, sorted=False)[1].cpu().numpy()          # (B, k)
        row = np.arange(B)
        chosen = np.full((B, R), -1, dtype=np.int64)
        conf = np.zeros((B, R))
        sure = np.ones(B, dtype=bool)
        alive = np.ones((B, k), dtype=bool)
        # the children of the root: every leaf with a rank-0 label
        lo = np.zeros(B, dtype=np.int64)
        hi = np.full(B, self.n_leaves, dtype=np.int64)
        for r in range(R):
            c = self._np["l2c"][r][top]                          # (B, k)
            ok = alive & (c >= 0)
            # the candidate classes in ascending order, -1 (none) first:
            # each class counted once, and on a tie of masses the first
            # heaviest is the lowest class index (walk_full's rule)
            cand = np.sort(np.where(ok, c, -1), axis=1)
            valid = cand >= 0
            distinct = valid.copy()
            distinct[:, 1:] &= cand[:, 1:] != cand[:, :-1]
            cc = np.maximum(cand, 0)
            m = np.where(valid, _np_range(cs, self._np["start"][r][cc],
                                          self._np["end"][r][cc]), -1.0)
            at = m.argmax(1)
            best_p = m[row, at]
            has = valid[:, -1]
            best_c = np.where(has, cand[row, at], -1)
            listed = np.where(distinct, m, 0.0).sum(1)
            children = _np_range(cs, lo[:, None], hi[:, None])[:, 0]
            unlisted = children - listed     # bound on any other child
            sure &= np.where(has, best_p > unlisted + _TOL, unlisted <= 0)
            chosen[:, r] = best_c
            conf[:, r] = np.where(has, best_p, 0.0)
            alive = ok & (c == best_c[:, None])
            bc = np.maximum(best_c, 0)
            lo = np.where(has, self._np["child_start"][r][bc], hi)
            hi = np.where(has, self._np["end"][r][bc], hi)
        chosen, conf = torch.from_numpy(chosen), torch.from_numpy(conf)
        unsure = torch.from_numpy(np.flatnonzero(~sure))
        if len(unsure):
            ch, cf = self.walk_full(p[unsure], cs_t[unsure])
            chosen[unsure], conf[unsure] = ch, cf.cpu()
        self.n_full = int(len(unsure))
        return chosen, conf


def _np_range(cs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """:meth:`LeafTree._range` for (B, M) index arrays, in numpy."""
    upper = np.take_along_axis(cs, np.maximum(hi - 1, 0), 1)
    lower = np.where(lo <= 0, 0.0,
                     np.take_along_axis(cs, np.maximum(lo - 1, 0), 1))
    return np.where(hi <= lo, 0.0, upper - lower)
