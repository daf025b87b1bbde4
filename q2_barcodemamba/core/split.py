"""Validation / evaluation splits that do not leak near-identical reads.

A random record split puts copies of the same haplotype on both sides and
overstates species accuracy (we measured ~88 % vs ~60 % on genuinely new
haplotypes). Here records are first grouped into *haplotype clusters*:
records of one lineage whose sequences share >= ``min_jaccard`` of their
k-mers (k=8; 0.9 is roughly 99 % identity for full ITS) are linked, single
linkage. K-mers are canonical (a k-mer and its reverse complement count as
one), so two reads are compared the same way whichever strand each was
written on. Whole clusters go to one side. Two kinds of held-out records are
made, mirroring real use:

* ``seen``: a cluster of a lineage that keeps other clusters in training;
* ``unseen``: every record of a lineage whose parent (genus) keeps other
  lineages in training — the right answer is the parent, not the leaf.
"""
import random
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .data import _kmer_codes, _reverse_complement_codes, reverse_complement


def canonical_kmers(seq: str, k: int, rc_codes: np.ndarray) -> set:
    """The read's k-mers (codes of :func:`.data._kmer_codes`), each as the
    smaller of its code and its reverse complement's (``rc_codes`` =
    :func:`.data._reverse_complement_codes`), so a read and its reverse
    complement have the same set."""
    codes = _kmer_codes(seq, k)
    return set(np.minimum(codes, rc_codes[codes]).tolist())


def haplotype_clusters(seqs: Sequence[str], leaves: Sequence[str],
                       min_jaccard: float = 0.9, k: int = 8) -> np.ndarray:
    """Cluster id per record (clusters never span two leaves)."""
    cluster = np.full(len(seqs), -1, dtype=np.int64)
    rc_codes = _reverse_complement_codes(k)
    by_leaf = defaultdict(list)
    for i, leaf in enumerate(leaves):
        by_leaf[leaf].append(i)
    next_id = 0
    for leaf in sorted(by_leaf):
        idx = by_leaf[leaf]
        uniq: Dict[str, List[int]] = defaultdict(list)
        for i in idx:
            s = seqs[i]
            key = min(s, reverse_complement(s))
            uniq[key].append(i)
        keys = list(uniq)
        sets = [canonical_kmers(s, k, rc_codes) for s in keys]
        parent = list(range(len(keys)))

        def find(a):
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                sa, sb = sets[a], sets[b]
                union = len(sa | sb)
                if union and len(sa & sb) / union >= min_jaccard:
                    parent[find(a)] = find(b)
        roots = {}
        for a, key in enumerate(keys):
            r = find(a)
            if r not in roots:
                roots[r] = next_id
                next_id += 1
            cluster[uniq[key]] = roots[r]
    return cluster


def _hold_out_seen(leaf_records: Dict[str, List[int]], cluster: np.ndarray,
                   held: np.ndarray, target: int, rng: random.Random) -> None:
    """Mark whole haplotype clusters as held out (in ``held``), at most
    all but one cluster per leaf, in random order, until ``target``
    records are held out."""
    clusters_of = defaultdict(list)
    for leaf, idx in leaf_records.items():
        if not held[idx[0]]:
            for c in sorted(set(cluster[idx].tolist())):
                clusters_of[leaf].append(c)
    members = defaultdict(list)
    for i, c in enumerate(cluster):
        members[int(c)].append(i)
    candidates = [(leaf, c) for leaf, cs in clusters_of.items()
                  if len(cs) > 1 for c in cs]
    rng.shuffle(candidates)
    left = {leaf: len(cs) for leaf, cs in clusters_of.items()}
    for leaf, c in candidates:
        if held.sum() >= target:
            break
        if left[leaf] <= 1:
            continue
        held[members[c]] = True
        left[leaf] -= 1


def grouped_split(seqs: Sequence[str], lineages: Sequence[Tuple[str, ...]],
                  fraction: float, seed: int = 0,
                  unseen_share: float = 0.25, min_jaccard: float = 0.9
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Split record indices into (train, held_out) without leakage.

    ``fraction`` of the records (approximately) are held out; about
    ``unseen_share`` of those as whole unseen lineages (more when too few
    lineages have several haplotype clusters). Returns two sorted
    index arrays. Deterministic for a given ``seed``. Records with an empty
    lineage always stay in training.
    """
    n = len(seqs)
    leaves = [";".join(lin) for lin in lineages]
    cluster = haplotype_clusters(seqs, leaves, min_jaccard)
    rng = random.Random(seed)
    target = int(round(fraction * n))
    held = np.zeros(n, dtype=bool)
    if target == 0:
        return np.arange(n), np.arange(0)

    leaf_records = defaultdict(list)
    for i, leaf in enumerate(leaves):
        if leaf:
            leaf_records[leaf].append(i)
    # lineages per parent, to know which leaves can be "unseen"
    siblings = defaultdict(set)
    for leaf in leaf_records:
        parts = leaf.split(";")
        if len(parts) > 1:
            siblings[";".join(parts[:-1])].add(leaf)

    # 1. whole unseen leaves, only if the parent keeps >= 1 other leaf
    order = sorted(leaf_records)
    rng.shuffle(order)

    def take_unseen(limit):
        taken = 0
        for leaf in order:
            if taken >= limit:
                break
            if held[leaf_records[leaf][0]]:
                continue
            parent = ";".join(leaf.split(";")[:-1])
            remaining = [s for s in siblings.get(parent, ())
                         if s != leaf and not held[leaf_records[s][0]]]
            if not parent or not remaining:
                continue
            if len(leaf_records[leaf]) > max(1, target // 20):
                continue  # keep big lineages in training
            held[leaf_records[leaf]] = True
            taken += len(leaf_records[leaf])
        return taken

    take_unseen(unseen_share * target)
    # 2. seen: one cluster of a leaf that keeps other clusters in training
    _hold_out_seen(leaf_records, cluster, held, target, rng)
    # 3. references with few repeated lineages (e.g. ~1 read per species):
    # fill up with more unseen lineages
    if held.sum() < target:
        take_unseen(target - held.sum())
    return np.flatnonzero(~held), np.flatnonzero(held)


def hold_out_genera(lineages: Sequence[Tuple[str, ...]], train: np.ndarray,
                    held: np.ndarray, fraction: float, seed: int = 0,
                    rank: int = -2) -> Tuple[np.ndarray, np.ndarray]:
    """Move whole genera (the taxa at ``rank`` of the lineages, the
    second-last by default) from ``train`` to ``held`` until about
    ``fraction`` of all records are such genera. A genus moves only if its
    family keeps another genus in training, and no genus larger than a
    tenth of the target moves, so the right answer for its reads (the
    family) stays knowable. Returns sorted (train, held). Deterministic for
    a ``seed``. The calibrator of :mod:`.abstention` learns from these reads
    when to stop at the family."""
    target = int(round(fraction * (len(train) + len(held))))
    if target == 0:
        return train, held
    genus = defaultdict(list)
    for i in train:
        lin = lineages[i]
        depth = len(lin) + rank if rank < 0 else rank
        if depth >= 1 and len(lin) > depth:
            genus[tuple(lin[:depth + 1])].append(int(i))
    family = defaultdict(set)
    for g in genus:
        family[g[:-1]].add(g)
    order = sorted(genus)
    random.Random(seed + 17).shuffle(order)
    moved: List[int] = []
    for g in order:
        if len(moved) >= target:
            break
        family[g[:-1]].discard(g)
        if not family[g[:-1]] or len(genus[g]) > max(1, target // 10):
            family[g[:-1]].add(g)      # keep it: it is the family's last
            continue
        moved.extend(genus[g])
    gone = np.zeros(len(train) + len(held), dtype=bool)
    gone[moved] = True
    return (np.asarray(sorted(i for i in train if not gone[i]), dtype=int),
            np.asarray(sorted(set(held.tolist()) | set(moved)), dtype=int))
