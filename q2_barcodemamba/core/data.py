"""DNA sequence cleaning, FASTA streaming, orientation and length batching.

Sequence policy (documented in docs/troubleshooting.md):

* upper/lower case are accepted; ``U`` is read as ``T`` (RNA input);
* gap characters ``-`` and ``.`` are removed (aligned references work);
* IUPAC ambiguity codes ``RYSWKMBDHVN`` are accepted and each is replaced by
  ``N`` before tokenisation (the tokenizer keeps ``N`` as its own symbol);
* any other character raises :class:`ValueError` naming the record, the
  1-based position and the character.
"""
import gzip
import io
import os
import random
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

IUPAC_AMBIGUOUS = "RYSWKMBDHVN"
_VALID = set("ACGT" + IUPAC_AMBIGUOUS)
_GAPS = "-."
_TO_N = str.maketrans({c: "N" for c in IUPAC_AMBIGUOUS})
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def clean_sequence(seq: str, record_id: str) -> str:
    """Return ``seq`` upper-cased, U->T, gaps removed, ambiguity codes -> N.

    Raises ValueError naming ``record_id``, the position and the character
    for anything that is not IUPAC DNA/RNA.
    """
    s = seq.upper().replace("U", "T")
    if not set(s) <= _VALID:
        for pos, ch in enumerate(s, start=1):
            if ch not in _VALID and ch not in _GAPS:
                raise ValueError(
                    f"Sequence {record_id!r} has the invalid character "
                    f"{seq[pos - 1]!r} at position {pos}. Only IUPAC "
                    "nucleotide codes (ACGTU, RYSWKMBDHVN) and gaps (- .) "
                    "are allowed: fix or remove this record.")
        for g in _GAPS:
            s = s.replace(g, "")
    return s.translate(_TO_N)


def reverse_complement(seq: str) -> str:
    """Reverse complement of a cleaned sequence (alphabet ACGTN)."""
    return seq.translate(_COMPLEMENT)[::-1]


def _open_text(path, encoding: str = "ascii"):
    """Text handle on a plain or gzipped file. FASTA is read as ASCII with
    replacement, so a stray non-ASCII byte becomes an invalid character that
    :func:`clean_sequence` reports with its record; taxonomies are UTF-8
    (taxon names such as Elsinoë)."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding,
                                errors="replace")
    return open(path, "r", encoding=encoding, errors="replace")


def read_fasta(path) -> Iterator[Tuple[str, str]]:
    """Stream ``(id, raw_sequence)`` records from a (gzipped) FASTA file.

    The id is the header up to the first whitespace. Sequences are returned
    as written (clean them with :func:`clean_sequence`). Memory use is one
    record at a time.
    """
    rid, chunks = None, []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if rid is not None:
                    yield rid, "".join(chunks)
                header = line[1:].split()
                if not header:
                    raise ValueError(f"{os.fspath(path)} line {lineno}: "
                                     "FASTA header without an id.")
                rid, chunks = header[0], []
            elif rid is None:
                raise ValueError(f"{os.fspath(path)} line {lineno}: sequence "
                                 "data before the first '>' header; this is "
                                 "not a FASTA file.")
            else:
                chunks.append(line)
    if rid is not None:
        yield rid, "".join(chunks)


def read_reads(path) -> Tuple[List[str], List[str]]:
    """(ids, raw sequences) of a (gzipped) FASTA file, in file order."""
    ids, seqs = [], []
    for rid, seq in read_fasta(path):
        ids.append(rid)
        seqs.append(seq)
    return ids, seqs


def read_taxonomy(path) -> dict:
    """``{feature id: lineage}`` from a (gzipped) QIIME taxonomy TSV
    (header line, then ``id<TAB>taxon[<TAB>...]``)."""
    with _open_text(path, encoding="utf-8") as fh:
        next(fh, None)
        rows = (line.rstrip("\n").split("\t") for line in fh)
        return {r[0]: r[1] for r in rows if len(r) >= 2}


def batched(iterable: Iterable, n: int) -> Iterator[list]:
    """Yield lists of up to ``n`` consecutive items."""
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


class SeenIds:
    """Duplicate check for read ids streamed in chunks, in bounded memory.

    A set of a million id strings costs ~100 MB; this keeps one sorted
    64-bit hash per id (8 bytes; 80 MB for 10 million reads) and merges
    each chunk in with a linear-time stable sort of two sorted runs. Hashes
    are Python's string hash (64-bit SipHash, fixed within a process); two
    distinct ids share one with probability ~n^2 / 2^65 (3e-8 for a million
    reads), in which case the second is reported as a duplicate.
    """

    def __init__(self):
        self._sorted = np.empty(0, dtype=np.int64)

    def __len__(self):
        return len(self._sorted)

    def add(self, ids: Sequence[str]) -> None:
        """Record ``ids``; ValueError naming the first id seen before."""
        in_chunk = set()
        for rid in ids:
            if rid in in_chunk:
                raise _duplicate(rid)
            in_chunk.add(rid)
        h = np.fromiter((hash(rid) for rid in ids), dtype=np.int64,
                        count=len(ids))
        if len(self._sorted):
            pos = np.searchsorted(self._sorted, h).clip(
                max=len(self._sorted) - 1)
            hit = np.flatnonzero(self._sorted[pos] == h)
            if hit.size:
                raise _duplicate(ids[hit[0]])
        self._sorted = np.sort(np.concatenate([self._sorted, np.sort(h)]),
                               kind="stable")


def _duplicate(rid: str) -> ValueError:
    return ValueError(f"Read id {rid!r} occurs more than once; ids must be "
                      "unique.")


def length_batches(lengths: Sequence[int], batch_size: int,
                   shuffle: bool = False, seed: int = 0,
                   window: int = 50) -> List[List[int]]:
    """Group indices into batches of similar length (less padding).

    With ``shuffle`` the indices are shuffled, sorted by length within
    windows of ``window`` batches, and the resulting batches shuffled again,
    so every epoch differs but batches stay length-homogeneous.
    """
    idx = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(idx)
    span = batch_size * window if shuffle else len(idx)
    batches = []
    for start in range(0, len(idx), max(span, 1)):
        block = sorted(idx[start:start + span], key=lambda i: lengths[i])
        batches.extend(block[i:i + batch_size]
                       for i in range(0, len(block), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


def token_batches(lengths: Sequence[int], max_tokens: int,
                  max_batch: int) -> List[List[int]]:
    """Length-sorted batches holding at most ``max_tokens`` padded tokens
    (batch size x longest read) and ``max_batch`` reads; a read longer than
    ``max_tokens`` gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur = [], []
    for i in order:          # ascending, so the newest read is the longest
        if cur and (len(cur) == max_batch
                    or (len(cur) + 1) * lengths[i] > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


_CODE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate("ACGT"):
    _CODE[ord(_c)] = _i


def _kmer_codes(seq: str, k: int) -> np.ndarray:
    """Integer codes (base 4) of all k-mers of ``seq`` without N."""
    a = _CODE[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
    if len(a) < k:
        return np.empty(0, dtype=np.int64)
    win = np.lib.stride_tricks.sliding_window_view(a, k)  # (n, k)
    ok = (win != 255).all(axis=1)
    weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    return (win[ok].astype(np.int64) * weights).sum(axis=1)


def _base_chunks(seqs: Iterable[str], max_bases: int = 1 << 20
                 ) -> Iterator[List[str]]:
    """Consecutive groups of reads of about ``max_bases`` bases in all, so
    the batched k-mer arrays stay a few tens of MiB."""
    chunk, n = [], 0
    for s in seqs:
        chunk.append(s)
        n += len(s)
        if n >= max_bases:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def _batch_kmer_codes(seqs: Sequence[str], k: int
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-mer codes at every position of the concatenated ``seqs``.

    Returns (codes (P,), valid (P,), read starts (n + 1,)): with A, C, G,
    T = 0..3 the code of the k-mer at p is sum_j a[p + j] 4**(k-1-j);
    ``valid`` is False for windows that contain N or cross from one read
    into the next. Read i's own windows are positions starts[i] ..
    starts[i + 1] - k.
    """
    starts = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=starts[1:])
    a = _CODE[np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)]
    n_pos = max(len(a) - k + 1, 0)
    valid = np.ones(n_pos, dtype=bool)
    cross = (starts[1:, None] - np.arange(1, k)).ravel()   # end-1 .. end-k+1
    valid[cross[(cross >= 0) & (cross < n_pos)]] = False
    n_at = np.flatnonzero(a == 255)
    if n_at.size:
        hit = (n_at[:, None] - np.arange(k)).ravel()       # windows over N
        valid[hit[(hit >= 0) & (hit < n_pos)]] = False
        a = np.where(a == 255, 0, a)
    base = a.astype(np.uint32)
    codes = base[:n_pos].copy()
    for j in range(1, k):
        codes <<= 2
        codes += base[j:j + n_pos]
    return codes, valid, starts


def _reverse_complement_codes(k: int) -> np.ndarray:
    """Code of the reverse complement of every k-mer code (4**k table)."""
    codes = np.arange(4 ** k, dtype=np.int64)
    rc = np.zeros_like(codes)
    for j in range(k):        # base j from the right becomes base j from
        rc = rc * 4 + (3 - ((codes >> (2 * j)) & 3))   # the left, complemented
    return rc


class KmerOrienter:
    """Decide read orientation from k-mers shared with the reference.

    A bit set over all 4**k k-mers (k=10: 128 KiB) records which occur in
    the reference reads. A query is reverse-complemented when its reverse
    complement shares more k-mers with the reference than the read as given
    (ties keep the read as given). This is per read, so mixed-orientation
    inputs work, and costs far less than classifying both strands.
    """

    def __init__(self, bits: np.ndarray, k: int = 10):
        if bits.dtype != np.uint8 or bits.shape != (4 ** k // 8,):
            raise ValueError(f"Orientation k-mer table has shape {bits.shape}"
                             f" and dtype {bits.dtype}; expected "
                             f"({4 ** k // 8},) uint8 for k={k}.")
        self.bits, self.k = bits, k
        self._vote = None        # per-k-mer vote table, built on first use

    @classmethod
    def fit(cls, seqs: Iterable[str], k: int = 10) -> "KmerOrienter":
        present = np.zeros(4 ** k, dtype=bool)
        for chunk in _base_chunks(seqs):
            codes, valid, _ = _batch_kmer_codes(chunk, k)
            present[codes[valid]] = True
        return cls(np.packbits(present), k)

    def reverse_mask(self, seqs: Sequence[str]) -> np.ndarray:
        """Boolean per read: its reverse complement shares more k-mers with
        the reference than the read as given.

        Vectorised over the batch: k-mer codes are computed at once on the
        concatenated reads, and a 4**k table gives each k-mer's vote,
        hit(reverse complement) - hit(itself), so no reversed strings are
        built; the votes are summed per read. Same decisions as comparing
        the shares of the read's k-mers and of its reverse complement's
        k-mers found in the reference.
        """
        if self._vote is None:
            hit = np.unpackbits(self.bits).astype(np.int8)
            self._vote = hit[_reverse_complement_codes(self.k)] - hit
        out = np.zeros(len(seqs), dtype=bool)
        done = 0
        for chunk in _base_chunks(seqs):
            codes, valid, starts = _batch_kmer_codes(chunk, self.k)
            votes = np.where(valid, self._vote[codes], 0)
            csum = np.zeros(len(votes) + 1, dtype=np.int32)
            np.cumsum(votes, out=csum[1:])
            # read i sums windows starts[i] .. starts[i+1] - k (none if
            # shorter than k)
            last = np.maximum(starts[1:] - self.k + 1, starts[:-1])
            out[done:done + len(chunk)] = (csum[np.minimum(last, len(votes))]
                                           - csum[starts[:-1].clip(
                                               max=len(votes))]) > 0
            done += len(chunk)
        return out


def orient(seqs: Sequence[str], mode: str,
           orienter: Optional[KmerOrienter]) -> List[str]:
    """Apply ``read_orientation`` (auto | same | reverse-complement)."""
    if mode == "same":
        return list(seqs)
    if mode == "reverse-complement":
        return [reverse_complement(s) for s in seqs]
    if mode != "auto":
        raise ValueError(f"read_orientation must be 'auto', 'same' or "
                         f"'reverse-complement', not {mode!r}.")
    if orienter is None:
        return list(seqs)
    flip = orienter.reverse_mask(seqs)
    return [reverse_complement(s) if f else s for s, f in zip(seqs, flip)]
