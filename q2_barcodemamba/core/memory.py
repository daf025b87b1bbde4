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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .kmers import INDEX_K, MAX_DF, KmerIndex, KmerSets
from .topk import topk

SEARCH_BLOCK = 16384  # reference reads per matrix product in the search


def pack_sequences(seqs: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Concatenated ASCII bytes (uint8) and offsets (n + 1,) int64."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    data = np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)
    return data.copy(), offsets


def unpack_sequences(data: np.ndarray, offsets: np.ndarray) -> list:
    raw = data.tobytes().decode("ascii")
    return [raw[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


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
        first (equal ones by reference index), on ``z``'s device. Memory:
        B x SEARCH_BLOCK floats."""
        ref = self._on(z.device)
        q = torch.nn.functional.normalize(z.float(), dim=1).to(ref.dtype)
        m = min(m, len(self))
        best_s = best_i = None
        for s in range(0, len(self), SEARCH_BLOCK):
            sims = (q @ ref[s:s + SEARCH_BLOCK].T).float()
            top_s, top_i = topk(sims, min(m, sims.shape[1]), sorted=False)
            top_i = top_i + s
            if best_s is not None:
                top_s = torch.cat([best_s, top_s], 1)
                top_i = torch.cat([best_i, top_i], 1)
                top_s, pick = top_s.topk(m, dim=1, sorted=False)
                top_i = top_i.gather(1, pick)
            best_s, best_i = top_s, top_i
        # equal similarities (identical reference reads are common) in a
        # fixed order, the lower reference index first, whichever order
        # the selection returned them in: the votes take the first k
        o = torch.argsort(best_i, dim=1)
        best_i, best_s = best_i.gather(1, o), best_s.gather(1, o)
        o = torch.sort(best_s, dim=1, descending=True, stable=True).indices
        return best_i.gather(1, o), best_s.gather(1, o)

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
        leaf, w, voted = self.vote_weights(idx, sim, k, tau, weight)
        p.scatter_add_(1, leaf.clamp(min=0), w.to(p.dtype))
        none = torch.nonzero(~voted).flatten()
        if len(none):
            p[none] += weight / max(p.shape[1], 1)

    def vote_weights(self, idx: np.ndarray, sim: np.ndarray, k: int,
                     tau: float, weight: float):
        """The votes of the ``k`` first neighbours ``idx``/``sim`` (B, >= k):
        their lineages (B, k), weights (B, k) summing to ``weight`` per
        query (exp((sim - best) / tau); 0 for a read without a lineage and
        for a -inf similarity, i.e. no neighbour there), and whether each
        query has a voter (B,)."""
        idx = torch.as_tensor(np.ascontiguousarray(idx[:, :k]))
        sim = torch.as_tensor(np.ascontiguousarray(sim[:, :k]),
                              dtype=torch.float32)
        ok = torch.isfinite(sim)
        best = torch.where(ok[:, :1], sim[:, :1], torch.zeros_like(sim[:, :1]))
        w = torch.exp((torch.where(ok, sim, torch.zeros_like(sim)) - best)
                      / tau)
        leaf = self.leaf[idx]
        w = torch.where((leaf >= 0) & ok, w, torch.zeros_like(w))
        total = w.sum(1, keepdim=True)
        w = torch.where(total > 0, w * (weight / total.clamp(min=1e-30)),
                        torch.zeros_like(w))
        return leaf, w, total[:, 0] > 0

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


@dataclass
class ReferenceClasses:
    """``cls``: class of every reference memory row at every rank
    (R, n_ref), -1 where unknown; ``log_rows``: per rank, log(1 + memory
    rows) of every class (the ``ref_reads`` evidence; rows are reference
    reads and the amplicons cut from them)."""
    cls: np.ndarray
    log_rows: List[np.ndarray]


def reference_classes(leaf_to_class: np.ndarray, memory: ReferenceMemory
                      ) -> ReferenceClasses:
    """The classes of the memory's rows and the rows per class."""
    leaf = memory.leaf.numpy()
    cls = leaf_to_class[:, np.maximum(leaf, 0)]
    cls[:, leaf < 0] = -1
    log_rows = [np.log1p(np.bincount(
        c[c >= 0], minlength=int(leaf_to_class[r].max(initial=-1)) + 1))
        for r, c in enumerate(cls)]
    return ReferenceClasses(cls, log_rows)


def _ref_reads(ref: ReferenceClasses, chosen: np.ndarray) -> np.ndarray:
    """log(1 + memory rows) of the called classes ``chosen`` (B, R); 0
    where there is no call. The more reference reads a taxon has, the
    more of its variation the reference shows: a query near a taxon known
    from one read is the classic case where species identification by
    best match fails (Meier et al. 2006)."""
    out = np.zeros(chosen.shape)
    for r, tab in enumerate(ref.log_rows):
        c = chosen[:, r]
        ok = (c >= 0) & (c < len(tab))
        out[ok, r] = tab[c[ok]]
    return out
