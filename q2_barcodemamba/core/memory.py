"""Reference memory: every reference read, its embedding and its lineage.

A network trained on labels alone sees each species of a sparse reference
once or twice; it neither memorises the reference as a top hit does nor
knows when a query's species is absent. The memory keeps, beside the
network, the pooled embedding of every reference read (float16,
L2-normalised) and the read itself. At classify time a query's nearest
reference reads are found by exact cosine search (batched matrix products
over blocks of the reference, so memory is bounded by the block size, on a
CPU or a GPU), re-scored by alignment-free sequence similarity (Jaccard
index of their k-mer sets, a close proxy of sequence identity between
barcodes; e.g. Ondov et al. 2016), and their lineages vote. The vote is
mixed into the network's lineage probabilities (as kNN-LM mixes a
neighbour distribution into a language model, Khandelwal et al. 2020) and
the similarities feed the learned abstention (:mod:`.calibrator`).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .data import _batch_kmer_codes

KMER_K = 8            # k-mer size of the sequence similarity (codes < 2**16)
INDEX_K = 10          # k-mer size of the candidate search (fewer shared by chance)
MAX_DF = 0.1          # k-mers in more of the reads are not searched,
MAX_POSTING = 1000    # nor those in more reads than this (UNITE-size sets)
CANDIDATE_ELEMENTS = 1 << 20   # queries x reference reads counted at once
SEARCH_BLOCK = 16384  # reference reads per matrix product in the search
_TABLE_ROWS = 32      # queries per k-mer lookup table (32 x 4**8 bytes)


def pack_sequences(seqs: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Concatenated ASCII bytes (uint8) and offsets (n + 1,) int64."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    data = np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)
    return data.copy(), offsets


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


def unpack_sequences(data: np.ndarray, offsets: np.ndarray) -> list:
    raw = data.tobytes().decode("ascii")
    return [raw[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


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
    and changed 9 of 5,000 calls, 0.2 %). The
    candidates' similarities are then computed exactly with all k-mers
    (:meth:`KmerSets.jaccard`).
    """

    def __init__(self, ref: KmerSets, max_df: float = 0.1,
                 max_posting: int = MAX_POSTING):
        n = len(ref)
        self.n = n
        counts = np.bincount(ref.codes, minlength=4 ** ref.k)
        self.ptr = np.zeros(4 ** ref.k + 1, dtype=np.int64)
        np.cumsum(counts, out=self.ptr[1:])
        self.postings = _postings(ref, self.ptr)
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
            if m < self.n:      # torch's topk: ~10x numpy's argpartition
                out[s:e] = torch.from_numpy(shared).topk(
                    m, dim=1, sorted=False).indices.numpy()
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


@dataclass
class Neighbours:
    """Nearest reference reads of a batch of queries, most similar first:
    by k-mer Jaccard index among the candidates of the k-mer search
    (``kmer_idx``/``kmer_sim``, (B, M)) and by embedding cosine
    (``emb_idx``/``emb_sim``, (B, E))."""
    kmer_idx: np.ndarray
    kmer_sim: np.ndarray
    emb_idx: np.ndarray
    emb_sim: np.ndarray

    def take(self, rows) -> "Neighbours":
        return Neighbours(self.kmer_idx[rows], self.kmer_sim[rows],
                          self.emb_idx[rows], self.emb_sim[rows])


class ReferenceMemory:
    """Embeddings, lineages (leaf indices) and reads of the reference.

    ``embeddings`` (n, D) float16, L2-normalised rows; ``leaf`` (n,) int64
    index into the classifier's lineages (-1: a read whose lineage has no
    known rank, it never votes); ``seq_data``/``seq_offsets``: the reads
    (see :func:`pack_sequences`).
    """

    def __init__(self, embeddings: torch.Tensor, leaf: torch.Tensor,
                 seq_data: np.ndarray, seq_offsets: np.ndarray):
        if embeddings.dim() != 2 or leaf.shape != (embeddings.shape[0],) \
                or seq_offsets.shape != (embeddings.shape[0] + 1,):
            raise ValueError("reference memory: embeddings, lineages and "
                             "reads disagree in number.")
        self.embeddings = embeddings.to(torch.float16).contiguous()
        self.leaf = leaf.long()
        self.seq_data, self.seq_offsets = seq_data, seq_offsets
        self._kmers: Optional[KmerSets] = None
        self._index: Optional[KmerIndex] = None
        self._dev_cache: Dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def kmers(self) -> KmerSets:
        if self._kmers is None:
            self._kmers = KmerSets(unpack_sequences(self.seq_data,
                                                    self.seq_offsets))
        return self._kmers

    @property
    def index(self) -> KmerIndex:
        if self._index is None:
            self._index = KmerIndex(KmerSets(unpack_sequences(
                self.seq_data, self.seq_offsets), INDEX_K), MAX_DF)
        return self._index

    def kmer_neighbours(self, seqs: Sequence[str], n_kmer: int
                        ) -> Tuple[np.ndarray, np.ndarray]:
        """The ``n_kmer`` candidates of the k-mer search ranked by exact
        Jaccard index, most similar first: (indices, similarities)."""
        if n_kmer <= 0:
            return np.zeros((len(seqs), 0), np.int64), \
                np.zeros((len(seqs), 0))
        cand = self.index.candidates(KmerSets(seqs, INDEX_K), n_kmer)
        sim = self.kmers.jaccard(KmerSets(seqs, self.kmers.k), cand)
        order = np.argsort(-sim, axis=1, kind="stable")
        return np.take_along_axis(cand, order, 1), \
            np.take_along_axis(sim, order, 1)

    def neighbours(self, seqs: Sequence[str], z: torch.Tensor,
                   n_kmer: int = 64, n_emb: int = 32,
                   kmer: Optional[Tuple[np.ndarray, np.ndarray]] = None
                   ) -> Neighbours:
        """Nearest reference reads of the queries ``seqs`` (cleaned,
        oriented) with embeddings ``z`` (B, D): ``n_kmer`` candidates of
        the k-mer search ranked by exact Jaccard index (or ``kmer``, that
        result computed beforehand by :meth:`kmer_neighbours`), and the
        ``n_emb`` nearest embeddings (none when ``z`` is None or a count is
        0)."""
        B = len(seqs)
        cand, sim = kmer if kmer is not None else \
            self.kmer_neighbours(seqs, n_kmer)
        if z is not None and n_emb > 0:
            e_idx, e_sim = self.search(z, n_emb)
            e_idx, e_sim = e_idx.cpu().numpy(), e_sim.cpu().numpy()
        else:
            e_idx, e_sim = np.zeros((B, 0), np.int64), np.zeros((B, 0))
        return Neighbours(cand, sim, e_idx, e_sim)

    def with_embeddings(self, embeddings: torch.Tensor) -> "ReferenceMemory":
        """The same reads with new embeddings; the k-mer structures, which
        do not depend on them, are shared."""
        z = torch.nn.functional.normalize(embeddings.float(), dim=1)
        out = ReferenceMemory(z, self.leaf, self.seq_data, self.seq_offsets)
        out._kmers, out._index = self._kmers, self._index
        return out

    @classmethod
    def build(cls, embeddings: torch.Tensor, leaf: np.ndarray,
              seqs: Sequence[str]) -> "ReferenceMemory":
        z = torch.nn.functional.normalize(embeddings.float(), dim=1)
        data, offsets = pack_sequences(seqs)
        return cls(z, torch.as_tensor(np.ascontiguousarray(leaf)), data,
                   offsets)

    def _on(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._dev_cache:
            dtype = torch.float32 if device.type == "cpu" else torch.float16
            self._dev_cache = {key: self.embeddings.to(device, dtype)}
        return self._dev_cache[key]

    @torch.no_grad()
    def search(self, z: torch.Tensor, m: int) -> Tuple[torch.Tensor,
                                                         torch.Tensor]:
        """Exact top-``m`` cosine neighbours of the (B, D) queries ``z``:
        (indices (B, m) long, similarities (B, m) float32), most similar
        first, on ``z``'s device. Memory: B x SEARCH_BLOCK floats."""
        ref = self._on(z.device)
        q = torch.nn.functional.normalize(z.float(), dim=1).to(ref.dtype)
        m = min(m, len(self))
        best_s = best_i = None
        for s in range(0, len(self), SEARCH_BLOCK):
            sims = (q @ ref[s:s + SEARCH_BLOCK].T).float()
            top_s, top_i = sims.topk(min(m, sims.shape[1]), dim=1)
            top_i = top_i + s
            if best_s is not None:
                top_s = torch.cat([best_s, top_s], 1)
                top_i = torch.cat([best_i, top_i], 1)
                top_s, pick = top_s.topk(m, dim=1)
                top_i = top_i.gather(1, pick)
            best_s, best_i = top_s, top_i
        return best_i, best_s

    def votes(self, idx: np.ndarray, sim: np.ndarray, k: int, tau: float,
              n_leaves: int) -> torch.Tensor:
        """Lineage distribution (B, n_leaves) of the ``k`` nearest of the
        sorted neighbours ``idx``/``sim`` (B, >= k), each weighted
        exp((sim - best) / tau); reads without a lineage do not vote, and
        a query with no voter gets the uniform distribution."""
        p = torch.zeros((idx.shape[0], n_leaves), dtype=torch.float32)
        self.add_votes(p, idx, sim, k, tau, 1.0)
        return p

    def add_votes(self, p: torch.Tensor, idx: np.ndarray, sim: np.ndarray,
                  k: int, tau: float, weight: float) -> None:
        """Add ``weight`` x :meth:`votes` to ``p`` (B, n_leaves) in place,
        touching only the voters' lineages (and whole rows only for a
        query without a voter)."""
        idx = torch.as_tensor(np.ascontiguousarray(idx[:, :k]))
        sim = torch.as_tensor(np.ascontiguousarray(sim[:, :k]),
                              dtype=torch.float32)
        w = torch.exp((sim - sim[:, :1]) / tau)
        leaf = self.leaf[idx]
        w = torch.where(leaf >= 0, w, torch.zeros_like(w))
        total = w.sum(1, keepdim=True)
        w = torch.where(total > 0, w * (weight / total.clamp(min=1e-30)),
                        torch.zeros_like(w))
        p.scatter_add_(1, leaf.clamp(min=0), w.to(p.dtype))
        none = torch.nonzero(total[:, 0] <= 0).flatten()
        if len(none):
            p[none] += weight / max(p.shape[1], 1)

    def to_tensors(self) -> Dict[str, torch.Tensor]:
        return {"memory.embeddings": self.embeddings.cpu().contiguous(),
                "memory.leaf": self.leaf.cpu().contiguous(),
                "memory.seq_data": torch.from_numpy(self.seq_data.copy()),
                "memory.seq_offsets": torch.from_numpy(
                    self.seq_offsets.copy())}

    @classmethod
    def from_tensors(cls, tensors: Dict[str, torch.Tensor]
                     ) -> Optional["ReferenceMemory"]:
        keys = ("memory.embeddings", "memory.leaf", "memory.seq_data",
                "memory.seq_offsets")
        if not any(k in tensors for k in keys):
            return None
        missing = [k for k in keys if k not in tensors]
        if missing:
            raise ValueError(f"the reference memory lacks {missing}.")
        return cls(tensors["memory.embeddings"], tensors["memory.leaf"],
                   tensors["memory.seq_data"].numpy().astype(np.uint8),
                   tensors["memory.seq_offsets"].numpy().astype(np.int64))
