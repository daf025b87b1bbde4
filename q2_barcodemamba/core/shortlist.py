"""Classify over a shortlist of lineages per read, so that the cost per
read does not grow with the number of reference lineages.

Every step of the usual caller (:class:`.abstention.Caller`) touches
every lineage of every read: the leaf head (a lineages x D matrix
product), the softmax and the walk's cumulative sums. At 417,000
lineages (ten times UNITE's ITS2 set) that was ~2 ms per read. From
:data:`MIN_LEAVES` lineages on, :func:`call` instead works on the
lineages of a few genera per read:

1. the genus head (the network's head of the rank above the leaves'
   last rank, trained beside the leaf head) scores every genus, a
   matrix that grows with genera only;
2. the genera of the read's voting k-mer neighbours come first, then
   the genera the genus head ranks highest, until :data:`GENERA` genera
   or :data:`BUDGET` lineages; the lineages that end above genus level
   under those genera's ancestors and the voters' own lineages are
   added;
3. where the embedding neighbours only vote (not evidence of the
   calibrator: the default), they are searched among the memory rows of
   those lineages, not the whole memory;
4. the leaf head, softmax, neighbour votes, walk and calibrator run on
   those lineages only. The softmax is normalised over the shortlist and
   then scaled by the genus head's probability of the genera kept, an
   estimate of the share the full softmax gives them: what the full
   softmax would give the lineages left out is dropped (the
   approximation; it is what a beam over a hierarchical softmax drops,
   Morin & Bengio 2005).

With every genus in the shortlist (and a lineage for every memory row)
the calls and confidences are those of the full caller (tests check
it). The genus head plays the part of a hierarchical softmax's first
level without retraining; its top genera held the calls of held-out
UNITE ITS1 queries at 32 genera per read (``benchmarks/shortlist_probe``,
docs/benchmarks.md), and forcing the shortlist on the shared references'
split classifiers moved test right calls by -0.9 to +0.7 points.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .kmers import _ranges as ranges
from .memory import Neighbours
from .runtime import autocast
from .topk import topk

MIN_LEAVES = 1 << 17   # lineages from which classify uses the shortlist
GENERA = 32            # genera per read at most
BUDGET = 4096          # lineages per read at most (the first genus and the
                       # voters' lineages are always kept)
ROWS = 64              # reads per block of the shortlist caller


class Shortlist:
    """The genera and lineage ranges of a :class:`.walk.LeafTree` whose
    leaves are listed in tree order (``tree.identity``), for genus rank
    ``g`` (its classes index the genus head's outputs)."""

    def __init__(self, tree, g: int):
        if not tree.identity:
            raise ValueError("the shortlist needs lineages in tree order.")
        npt = tree._np
        self.tree, self.g = tree, g
        self.l2c = npt["l2c"]
        self.start, self.end = npt["start"][g], npt["end"][g]
        self.size = self.end - self.start
        self.size_list = self.size.tolist()
        self._by_leaf = (None, None, None)   # memory rows by lineage
        # lineages that end above the genus, under each genus's ancestors:
        # the first positions of every ancestor's run
        first = np.where(self.size > 0, self.start, 0)
        anc = [self.l2c[r][first] for r in range(g)]            # (g, G)
        lo = [np.where(self.size > 0, npt["start"][r][a], 0)
              for r, a in enumerate(anc)]
        hi = [np.where(self.size > 0, npt["child_start"][r][a], 0)
              for r, a in enumerate(anc)]
        self.above_lo = np.stack(lo, 1) if g else np.zeros((len(first), 0),
                                                            np.int64)
        self.above_hi = np.stack(hi, 1) if g else self.above_lo

    def positions(self, genus_scores: torch.Tensor, voters: np.ndarray
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sorted lineage positions of each read's shortlist, as (row,
        position) pairs: rows (n,) and positions (n,) int64, grouped by
        row; and the genera kept per read (B, G) bool. ``genus_scores``
        (B, G); ``voters`` (B, V) lineages of the voting neighbours (-1:
        none)."""
        B = genus_scores.shape[0]
        n_top = min(GENERA, genus_scores.shape[1])
        top = topk(genus_scores.float(), n_top)[1].numpy()          # (B, T)
        vg = np.where(voters >= 0, self.l2c[self.g][np.maximum(voters, 0)],
                      -1)
        size = self.size_list
        g_rows, g_all = [], []
        for b, cands in enumerate(np.concatenate([vg, top], 1).tolist()):
            seen, total, n = set(), 0, 0
            for c in cands:
                if c < 0 or c in seen:
                    continue
                seen.add(c)
                if n and (n >= GENERA or total + size[c] > BUDGET):
                    break
                g_all.append(c)
                total += size[c]
                n += 1
            g_rows += [b] * n
        g_rows = np.asarray(g_rows, dtype=np.int64)
        g_all = np.asarray(g_all, dtype=np.int64)
        kept = np.zeros((B, genus_scores.shape[1]), dtype=bool)
        kept[g_rows, g_all] = True
        # each kept genus's run, the runs of lineages ending at its
        # ancestors, and the voters' own lineages: (row, position) pairs
        lo = np.concatenate([self.start[g_all][:, None],
                             self.above_lo[g_all]], 1).ravel()
        hi = np.concatenate([self.end[g_all][:, None],
                             self.above_hi[g_all]], 1).ravel()
        span = np.maximum(hi - lo, 0)
        r_of = np.repeat(g_rows, 1 + self.above_lo.shape[1])
        stride = self.tree.n_leaves
        vr = np.nonzero(voters >= 0)
        key = np.concatenate([np.repeat(r_of, span) * stride
                              + ranges(lo, span),
                              vr[0] * stride + voters[vr]])
        key = np.unique(key)
        return key // stride, key % stride, kept

    def embedding_neighbours(self, memory, z: torch.Tensor, pos: np.ndarray,
                              first: np.ndarray, m: int):
        """The ``m`` nearest memory rows by embedding cosine among the rows
        of each read's shortlisted lineages ``pos`` (grouped by read, read b
        from ``first[b]``): (indices, similarities) (B, m), most similar
        first, equal ones by row index (the exact search's order); -inf
        similarities (index 0) where a shortlist holds fewer rows."""
        if self._by_leaf[0] is not memory:
            leaf = memory.leaf.numpy()
            order = np.argsort(leaf, kind="stable")
            ptr = np.searchsorted(leaf[order],
                                  np.arange(self.tree.n_leaves + 1))
            self._by_leaf = (memory, order, ptr)
        _, order, ptr = self._by_leaf
        ref = memory._on(torch.device("cpu"))
        q = torch.nn.functional.normalize(z.float(), dim=1)
        B = len(first)
        out_i = np.zeros((B, m), dtype=np.int64)
        out_s = np.full((B, m), -np.inf, dtype=np.float32)
        bounds = np.append(first, len(pos)).tolist()
        for b in range(B):
            p = pos[bounds[b]:bounds[b + 1]]
            r = np.sort(order[ranges(ptr[p], ptr[p + 1] - ptr[p])])
            if not len(r):
                continue
            sim = (ref[torch.from_numpy(r)] @ q[b]).numpy()
            k = min(m, len(r))
            top = np.argpartition(-sim, k - 1)[:k] if k < len(r) \
                else np.arange(len(r))
            top = top[np.lexsort((r[top], -sim[top]))]
            out_i[b, :k], out_s[b, :k] = r[top], sim[top]
        return out_i, out_s


def for_tree(tree) -> Optional[Shortlist]:
    """The shortlist of a caller's tree: from :data:`MIN_LEAVES`
    lineages listed in tree order (every encoder ``LabelEncoder.fit``
    makes) with a genus rank; else None."""
    if tree.n_leaves < MIN_LEAVES or not tree.identity or tree.n_ranks < 2:
        return None
    return Shortlist(tree, tree.n_ranks - 2)


def applies(sl: Optional[Shortlist], logits) -> bool:
    """Whether the caller shortlists these logits: a shortlist, a leaf
    head with its genus head (:class:`.inference.HeadLogits` of a
    multi-head network) and embeddings on the CPU (on a GPU every
    lineage costs little)."""
    return sl is not None and getattr(logits, "parent", None) is not None \
        and logits.z.device.type == "cpu"


def leaf_logits(z: torch.Tensor, head: torch.nn.Module, rows: np.ndarray,
                pos: np.ndarray, first: np.ndarray, bf16: bool = False
                ) -> np.ndarray:
    """Leaf logits (n,) of the (row, lineage) pairs ``rows``/``pos``
    (grouped by row; row b's pairs start at ``first[b]``): each read's
    embedding with the head's rows of its own lineages only."""
    out = np.empty(len(pos), dtype=np.float32)
    w, bias = head.weight, head.bias
    bounds = np.append(first, len(pos)).tolist()
    with torch.no_grad(), autocast(z.device, bf16):
        for b in range(len(first)):
            p = torch.from_numpy(pos[bounds[b]:bounds[b + 1]])
            out[bounds[b]:bounds[b + 1]] = torch.nn.functional.linear(
                z[b], w[p], bias[p]).float().numpy()
    return out


def softmax(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Softmax within each row's run of ``x`` (rows start at ``first``)."""
    count = np.diff(np.append(first, len(x)))
    e = np.exp(x - np.repeat(np.maximum.reduceat(x, first), count))
    return e / np.repeat(np.add.reduceat(e, first), count)


def add_votes(p: np.ndarray, key: np.ndarray, stride: int, memory,
              idx: np.ndarray, sim: np.ndarray, k: int, tau: float,
              weight: float, first: np.ndarray, n_leaves: int) -> None:
    """:meth:`.memory.ReferenceMemory.add_votes` on the pairs ``key`` =
    row x ``stride`` + lineage (ascending) with probabilities ``p``;
    every voter's lineage is on its read's shortlist. A read without a
    voter gets ``weight`` / ``n_leaves`` on each shortlisted lineage."""
    leaf, w, voted = memory.vote_weights(idx, sim, k, tau, weight)
    leaf, w = leaf.numpy(), w.numpy()
    r, j = np.nonzero((leaf >= 0) & (w > 0))    # not padding (-inf)
    np.add.at(p, np.searchsorted(key, r * stride + leaf[r, j]), w[r, j])
    none = np.repeat(~voted.numpy(), np.diff(np.append(first, len(p))))
    p[none] += weight / max(n_leaves, 1)


def walk(p: np.ndarray, rows: np.ndarray, pos: np.ndarray,
         first: np.ndarray, l2c: np.ndarray,
         extra: Optional[np.ndarray] = None):
    """The top-down walk of :meth:`.walk.LeafTree.walk_full` over each
    read's shortlisted lineages, the (row, lineage) pairs ``rows``/``pos``
    (grouped by row, lineages ascending; row b starts at ``first[b]``)
    with probabilities ``p``: at each rank the child of the class chosen
    above with the largest summed probability (lowest class index on a
    tie), -1 once no lineage goes deeper. Returns chosen (B, R), its mass
    (B, R) and, for ``extra`` (other probabilities of the pairs), their
    mass of the same classes (else None). Lineages sharing a class at a
    rank are adjacent in tree order, so each class's sum is one run of a
    reduceat."""
    B, R = len(first), l2c.shape[0]
    chosen = np.full((B, R), -1, dtype=np.int64)
    mass = np.zeros((B, R))
    other = np.zeros((B, R)) if extra is not None else None
    alive = np.ones(len(pos), dtype=bool)
    pf = p.astype(np.float64)
    ef = extra.astype(np.float64) if extra is not None else None
    new_row = np.zeros(len(pos), dtype=bool)
    new_row[first] = True
    big = np.iinfo(np.int64).max
    for r in range(R):
        c = np.where(alive, l2c[r][pos], -1)
        start = new_row.copy()
        start[1:] |= c[1:] != c[:-1]
        at = np.flatnonzero(start)
        run_c, run_row = c[at], rows[at]
        run_m = np.add.reduceat(np.where(c >= 0, pf, 0.0), at)
        run_m = np.where(run_c >= 0, run_m, -1.0)
        # every row starts a run: per-row reductions over its runs
        rf = np.searchsorted(run_row, np.arange(B))
        best = np.maximum.reduceat(run_m, rf)
        top = (run_m == best[run_row]) & (run_m > 0)
        pick = np.minimum.reduceat(np.where(top, run_c, big), rf)
        has = pick < big
        chosen[:, r] = np.where(has, pick, -1)
        mass[:, r] = np.where(has, best, 0.0)
        if ef is not None:
            run_e = np.add.reduceat(np.where(c >= 0, ef, 0.0), at)
            mine = (run_c == chosen[run_row, r]) & (run_c >= 0)
            other[:, r] = np.add.reduceat(np.where(mine, run_e, 0.0), rf)
        alive &= (c == chosen[rows, r]) & has[rows]
    return chosen, mass, other


def call(caller, seqs: Sequence[str], z: torch.Tensor, logits, kmer=None):
    """Chosen class (B, R) and confidence (B, R) of ``caller`` (an
    :class:`.abstention.Caller` with a shortlist) for embeddings ``z`` and
    ``logits``, a :class:`.inference.HeadLogits` with a genus head;
    ``kmer``: the k-mer neighbours when searched already. Where the
    embedding neighbours only vote (the calibrator's evidence is not
    theirs), they are searched among the memory rows of each read's
    shortlist (:meth:`Shortlist.embedding_neighbours`), not the whole
    memory."""
    from .abstention import rank_evidence
    sl, m = caller.shortlist, caller.mixture
    local = caller.n_emb and "emb_top" not in caller.features
    nb = caller.memory.neighbours(seqs, z, caller.n_kmer,
                                  0 if local else caller.n_emb, kmer) \
        if caller.n_kmer or caller.n_emb else None
    n, R = len(z), sl.tree.n_ranks
    chosen = np.full((n, R), -1, dtype=np.int64)
    conf = np.zeros((n, R))
    n_leaves = sl.tree.n_leaves
    for s in range(0, n, ROWS):
        e = min(n, s + ROWS)
        zb = z[s:e]
        nb_s = nb.take(slice(s, e)) if nb is not None else None
        with torch.no_grad(), autocast(zb.device, logits.bf16):
            gs = logits.parent(zb).float()
        rows, pos, kept = sl.positions(gs, _voters(caller, nb_s, e - s))
        first = np.searchsorted(rows, np.arange(e - s))
        if local:
            nb_s = Neighbours(nb_s.kmer_idx, nb_s.kmer_sim,
                              *sl.embedding_neighbours(
                                  caller.memory, zb, pos, first,
                                  caller.n_emb))
        lg = leaf_logits(zb, logits.head, rows, pos, first, logits.bf16)
        # the shortlist's share of the full softmax is estimated by the
        # genus head's probability of the genera kept
        share = (torch.softmax(gs, 1).numpy() * kept).sum(1)
        p_net = softmax(lg.astype(np.float64) / caller.temperature,
                        first) * share[rows]
        p = p_net * m.net
        for kind, w in (("kmer", m.kmer), ("emb", m.emb)):
            if w > 0:
                idx = nb_s.kmer_idx if kind == "kmer" else nb_s.emb_idx
                sim = nb_s.kmer_sim if kind == "kmer" else nb_s.emb_sim
                add_votes(p, rows * (n_leaves + 1) + pos, n_leaves + 1,
                          caller.memory, idx, sim, m.k, m.tau, w, first,
                          n_leaves)
        need_net = "net_mass" in caller.features
        c, mass, net_mass = walk(p, rows, pos, first, sl.l2c,
                                 p_net if need_net else None)
        if caller.calibrator is not None:
            feats = [f for f in caller.features if f != "net_mass"]
            X = rank_evidence(feats, c, mass, nb_s, caller.ref, None,
                              sl.tree)
            if need_net:
                X = np.insert(X, caller.features.index("net_mass"),
                              net_mass, axis=2)
            mass = caller.calibrator.confidence(X)
        chosen[s:e], conf[s:e] = c, mass
    return chosen, conf


def _voters(caller, nb, B: int) -> np.ndarray:
    """(B, V) lineages of the neighbours that vote in the mixture (-1:
    none)."""
    m, parts = caller.mixture, [np.full((B, 0), -1, dtype=np.int64)]
    if nb is not None:
        leaf = caller.memory.leaf.numpy()
        if m.kmer > 0:
            parts.append(leaf[nb.kmer_idx[:, :m.k]])
        if m.emb > 0:
            parts.append(leaf[nb.emb_idx[:, :m.k]])
    return np.concatenate(parts, 1)
