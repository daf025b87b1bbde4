"""k-mer sets, their Jaccard similarity and an inverted k-mer index.

The alignment-free half of the reference memory (:mod:`.memory`): the
distinct k-mers of each read (CSR layout), the Jaccard index of two reads'
k-mer sets as a proxy of their sequence identity (e.g. Ondov et al. 2016),
and an inverted index (a posting list of reads per k-mer) that finds the
reference reads sharing the most k-mers with a query without comparing it
with every read.
"""
from typing import Optional, Sequence

import numpy as np
import torch

from .data import _batch_kmer_codes
from .topk import topk

KMER_K = 8            # k-mer size of the sequence similarity (codes < 2**16)
INDEX_K = 10          # k-mer size of the candidate search (fewer shared by chance)
MAX_DF = 0.1          # k-mers in more of the reads are not searched,
MAX_POSTING = 1000    # nor those in more reads than this (UNITE-size sets)
CANDIDATE_ELEMENTS = 1 << 20   # queries x reference reads counted at once
_TABLE_ROWS = 32      # queries per k-mer lookup table (32 x 4**8 bytes)


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], starts[i] + lens[i])`` over i:
    ones with the jump between ranges written at each range's first
    position, summed (a scatter and a cumulative sum, 1.3x ``repeat``)."""
    nz = lens > 0
    s, n = starts[nz].astype(np.int64), lens[nz].astype(np.int64)
    if not len(n):
        return np.zeros(0, dtype=np.int64)
    d = np.ones(int(n.sum()), dtype=np.int64)
    first = np.cumsum(n) - n
    d[0] = s[0]
    d[first[1:]] = s[1:] - (s[:-1] + n[:-1] - 1)
    return np.cumsum(d, out=d)


def _row_offsets(counts: np.ndarray, stride: int) -> np.ndarray:
    """``i * stride`` repeated ``counts[i]`` times: where query i's entries
    start in a flat (queries x stride) table, for each of its entries."""
    return np.repeat(np.arange(len(counts), dtype=np.int64) * stride,
                     np.asarray(counts, dtype=np.int64))

class KmerSets:
    """The distinct k-mers of each of a list of reads (CSR layout).

    ``codes[indptr[i]:indptr[i + 1]]`` are read i's distinct k-mer codes
    (A, C, G, T = 0..3, base 4; windows with N are skipped).
    """

    def __init__(self, seqs: Sequence[str], k: int = KMER_K):
        self.k = k
        mask = (1 << (2 * k)) - 1
        codes_all, ptr, done = [], [np.zeros(1, dtype=np.int64)], 0
        for start in range(0, len(seqs), 4096):   # bounded temporaries
            part = seqs[start:start + 4096]
            codes, valid, starts = _batch_kmer_codes(part, k)
            owner = np.repeat(np.arange(len(part), dtype=np.int64),
                              np.diff(starts))[:len(codes)]
            # torch's sort: ~1.5x numpy's unique here
            key = torch.unique(torch.from_numpy(
                owner[valid] << (2 * k) | codes[valid].astype(np.int64))
            ).numpy()
            counts = np.bincount(key >> (2 * k), minlength=len(part))
            codes_all.append((key & mask).astype(np.int32))
            ptr.append(done + np.cumsum(counts))
            done += int(counts.sum())
        self.codes = (np.concatenate(codes_all) if codes_all
                      else np.zeros(0, dtype=np.int32))
        self.indptr = np.concatenate(ptr).astype(np.int64)
        self.sizes = np.diff(self.indptr)

    def __len__(self) -> int:
        return len(self.sizes)

    def jaccard(self, queries: "KmerSets", cand: np.ndarray) -> np.ndarray:
        """Jaccard index (B, M) between query i and reference cand[i, j]
        (this object holds the references)."""
        B, M = cand.shape
        out = np.zeros((B, M), dtype=np.float32)
        width = 4 ** self.k
        table = np.zeros(_TABLE_ROWS * width, dtype=bool)
        for s in range(0, B, _TABLE_ROWS):
            rows = range(s, min(B, s + _TABLE_ROWS))
            table[:] = False
            for j, i in enumerate(rows):
                table[j * width + queries.codes[queries.indptr[i]:
                                                queries.indptr[i + 1]]] = True
            c = cand[s:s + len(rows)].ravel()
            lens = self.sizes[c]
            # each candidate's k-mers looked up in its query's table row
            at = self.codes[_ranges(self.indptr[c], lens)].astype(np.int64)
            at += _row_offsets(lens.reshape(len(rows), M).sum(1), width)
            shared = np.zeros(len(c), dtype=np.int64)
            nz = lens > 0
            if nz.any():
                first = (np.cumsum(lens) - lens)[nz]
                shared[nz] = np.add.reduceat(table[at], first,
                                             dtype=np.int64)
            q = queries.sizes[s:s + len(rows)].repeat(M)
            union = np.maximum(q + lens - shared, 1)
            out[s:s + len(rows)] = (shared / union).reshape(len(rows), M)
        return out


class KmerIndex:
    """Inverted index of reference k-mers for candidate search.

    For each k-mer the reference reads that contain it (a posting list).
    K-mers found in more than ``max_df`` of the reads (conserved sites such
    as the 5.8S rRNA gene in full-ITS reads) are left out of the search:
    they are shared with nearly every read, so they cost the most and
    barely change which reads share the most k-mers with a query; in a
    large reference, k-mers in more than ``max_posting`` reads likewise
    (posting lists are what the search costs: on UNITE's ITS2 set,
    41,700 lineages, the cap took the search from 1.2 to 0.7 ms per read
    and changed 9 of 5,000 calls, 0.2 %; None: :data:`MAX_POSTING`, read
    when the index is built). The candidates' similarities are then
    computed exactly with all k-mers (:meth:`KmerSets.jaccard`).
    """

    def __init__(self, ref: KmerSets, max_df: float = MAX_DF,
                 max_posting: Optional[int] = None):
        n = len(ref)
        self.n = n
        counts = np.bincount(ref.codes, minlength=4 ** ref.k)
        self.ptr = np.zeros(4 ** ref.k + 1, dtype=np.int64)
        np.cumsum(counts, out=self.ptr[1:])
        self.postings = _postings(ref, self.ptr)
        if max_posting is None:      # read now, so that a change of the
            max_posting = MAX_POSTING   # module constant takes effect
        self.searched = counts <= max(1.0, min(max_df * n, max_posting))

    def candidates(self, queries: KmerSets, m: int,
                   block: Optional[int] = None) -> np.ndarray:
        """(B, min(m, n)) reference reads sharing the most searched k-mers
        with each query (any order). Memory: ``block`` x n counts
        (default: 16 queries, fewer when that passes
        :data:`CANDIDATE_ELEMENTS`: 2 at 430,000 reference reads, where 16
        queries' counts were 55 MB, written fresh per block, and the
        search took twice as long)."""
        if block is None:
            block = max(1, min(16, CANDIDATE_ELEMENTS // max(1, self.n)))
        B, m = len(queries), min(m, self.n)
        out = np.zeros((B, m), dtype=np.int64)
        for s in range(0, B, block):
            e = min(B, s + block)
            lo, hi = queries.indptr[s], queries.indptr[e]
            codes = queries.codes[lo:hi]
            owner = np.repeat(np.arange(e - s), queries.sizes[s:e])
            keep = self.searched[codes]
            codes, owner = codes[keep], owner[keep]
            starts, lens = self.ptr[codes], self.ptr[codes + 1] - self.ptr[codes]
            key = self.postings[_ranges(starts, lens)].astype(np.int64)
            # the owner changes only between queries: a repeat of e - s runs
            key += _row_offsets(np.bincount(owner, weights=lens,
                                            minlength=e - s), self.n)
            shared = np.bincount(key, minlength=(e - s) * self.n).reshape(
                e - s, self.n)
            if m < self.n:      # torch's topk: ~10x numpy's argpartition;
                # blocks of 128: on 430,000 reference reads 0.36 instead of
                # 0.72 ms per query (on 43,000 the same as torch.topk, which
                # topk() then uses)
                out[s:e] = topk(torch.from_numpy(shared), m, block=128,
                                sorted=False)[1].numpy()
            else:
                out[s:e] = np.arange(self.n)[None, :]
        return out


def _postings(ref: KmerSets, ptr: np.ndarray,
              chunk: int = 1 << 20) -> np.ndarray:
    """The reads containing each k-mer, ascending, one list after another
    in k-mer order (``ptr``: where each list starts): a counting sort
    filled ``chunk`` k-mers at a time (whole reads), each chunk sorted by
    k-mer (torch's stable sort). The same array as a stable argsort of
    all codes, at a tenth of the transient memory: one argsort of 76 M
    codes (a 10x UNITE ITS2 reference) held ~2 GiB of int64 indices and
    row numbers beside the result."""
    n_codes = len(ptr) - 1
    postings = np.empty(len(ref.codes), dtype=np.int32)
    fill = ptr[:-1].copy()           # next free slot of each k-mer's list
    bounds = np.unique(np.concatenate([np.searchsorted(
        ref.indptr, np.arange(0, len(ref.codes), chunk)), [len(ref)]]))
    first = np.zeros(n_codes, dtype=np.int64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo, hi = ref.indptr[a], ref.indptr[b]
        code, order = torch.sort(torch.from_numpy(ref.codes[lo:hi]),
                                 stable=True)
        code, order = code.numpy(), order.numpy()
        rows = np.repeat(np.arange(a, b, dtype=np.int32), ref.sizes[a:b])
        cnt = np.bincount(code, minlength=n_codes)
        np.cumsum(cnt[:-1], out=first[1:])      # each k-mer's run in code
        postings[fill[code] + np.arange(len(code)) - first[code]] = \
            rows[order]
        fill += cnt
    return postings
