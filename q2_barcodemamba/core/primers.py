"""Fungal ITS primer sites and in-silico amplicons ("virtual PCR").

This module finds where a PCR primer binds a read and cuts out the amplicon
that a primer pair would produce, so that full-ITS references can be trimmed
to the region actually sequenced (ITS1 or ITS2) before training or
classification. Its semantics mirror QIIME 2's ``feature-classifier
extract-reads`` (Bokulich et al. 2018, ``bokulich2018``) and cutadapt's
linked-adapter trimming (Martin 2011, ``martin2011cutadapt``): the forward
primer is searched on the read, the reverse primer's reverse complement
downstream of it, and what lies *between* the two sites is returned, the
primers themselves excluded. Reads written on the other strand are
reverse-complemented first, so the amplicon always reads 5'->3' in the
forward primer's direction.

Matching is a Hamming search (substitutions only, no insertions/deletions)
of the IUPAC primer over every window of the read. Primers are short
(19-27 nt) and their sites sit in the conserved SSU / 5.8S / LSU rRNA, where
indels inside a primer site are rare, so allowing a few substitutions finds
practically every site while staying exact, simple and fast: reads and
primers are bit masks (A=1, C=2, G=4, T=8; an IUPAC code is the OR of its
bases) and a window position matches when ``read & primer != 0``. An ``N``
(or any other ambiguity code) in the *read* matches nothing, i.e. counts as
a mismatch, so a run of unknown bases never produces a site by itself.

The primers and the named regions they amplify are listed, with their
references, in :mod:`.primer_table`. The keys in parentheses are entries
of ``q2_barcodemamba/citations.bib``.
Standard library and numpy only.
"""
import functools
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# the catalogue: primer sequences, named regions, primer directions
from .primer_table import FORWARD as _FORWARD
from .primer_table import INNER as _INNER
from .primer_table import PRIMERS, REGIONS
from .primer_table import REGION_REQUIRED as _REGION_REQUIRED
from .primer_table import REVERSE as _REVERSE

__all__ = ["PRIMERS", "REGIONS", "Site", "PrimerPair", "reverse_complement",
           "find_site", "parse_region", "amplicon", "cut_reads"]

_IUPAC: Dict[str, int] = {
    "A": 1, "C": 2, "G": 4, "T": 8, "U": 8,
    "R": 1 | 4, "Y": 2 | 8, "S": 2 | 4, "W": 1 | 8, "K": 4 | 8, "M": 1 | 2,
    "B": 2 | 4 | 8, "D": 1 | 4 | 8, "H": 1 | 2 | 8, "V": 1 | 2 | 4,
    "N": 1 | 2 | 4 | 8,
}

# Read bytes -> masks: only A, C, G, T (and U) get bits; N, other ambiguity
# codes and anything else get 0 and so mismatch every primer base.
_READ_LUT = np.zeros(256, dtype=np.uint8)
for _b, _m in (("A", 1), ("C", 2), ("G", 4), ("T", 8), ("U", 8)):
    _READ_LUT[ord(_b)] = _m
    _READ_LUT[ord(_b.lower())] = _m
# Complement of a mask = its 4 bits reversed (A<->T, C<->G).
_COMPLEMENT_LUT = np.array(
    [sum(1 << (3 - i) for i in range(4) if m >> i & 1) if m < 16 else 0
     for m in range(256)], dtype=np.uint8)

_RC_TABLE = str.maketrans("ACGTURYSWKMBDHVNacgturyswkmbdhvn",
                          "TGCAAYRSWMKVHDBNtgcaayrswmkvhdbn")


@dataclass(frozen=True)
class Site:
    """A primer binding site on a read.

    ``start``/``end`` are 0-based, end-exclusive coordinates on the read as
    given (forward coordinates, whichever strand matched); ``strand`` is
    ``"+"`` when the primer sequence itself matches the read and ``"-"``
    when its reverse complement does.
    """
    start: int
    end: int
    mismatches: int
    strand: str


def reverse_complement(seq: str) -> str:
    """IUPAC-aware reverse complement (R<->Y, K<->M, B<->V, D<->H; S, W and
    N are their own complements; U is complemented to A). Case is kept;
    characters that are not nucleotide codes (gaps) are left as they are."""
    return seq.translate(_RC_TABLE)[::-1]


@functools.lru_cache(maxsize=1024)
def _primer_masks(primer: str) -> Tuple[np.ndarray, np.ndarray]:
    """(mask of the primer, mask of its reverse complement); ValueError for
    an empty primer or a character that is not an IUPAC nucleotide code."""
    if not isinstance(primer, str) or not primer:
        raise ValueError(f"A primer must be a non-empty IUPAC sequence, "
                         f"got {primer!r}.")
    bad = sorted({c for c in primer.upper() if c not in _IUPAC})
    if bad:
        raise ValueError(f"Primer {primer!r} has non-IUPAC character(s) "
                         f"{', '.join(map(repr, bad))}; allowed: "
                         f"{''.join(sorted(_IUPAC))}.")
    fwd = np.array([_IUPAC[c] for c in primer.upper()], dtype=np.uint8)
    rc = _COMPLEMENT_LUT[fwd[::-1]]
    fwd.setflags(write=False)
    rc.setflags(write=False)
    return fwd, rc


def _read_mask(read: str) -> np.ndarray:
    """Bit masks of the read's bases (0 for N and anything else)."""
    return _READ_LUT[np.frombuffer(read.encode("ascii", "replace"),
                                   dtype=np.uint8)]


def _check_mismatches(max_mismatches) -> int:
    if (isinstance(max_mismatches, bool)
            or not isinstance(max_mismatches, (int, np.integer))
            or max_mismatches < 0):
        raise ValueError(f"max_mismatches must be an integer >= 0, got "
                         f"{max_mismatches!r}.")
    return int(max_mismatches)


def find_site(read: str, primer: str, max_mismatches: int = 2,
              strand: str = "both") -> Optional[Site]:
    """Best binding site of the IUPAC ``primer`` on ``read``.

    Hamming search without indels over all windows of the read; ``strand``
    is ``"+"`` (the primer as written), ``"-"`` (its reverse complement) or
    ``"both"``. Best = fewest mismatches, then leftmost, then ``"+"``.
    A read base matches a primer code when the base is one of the code's
    bases; ``N`` (and any other non-ACGT character) in the read is a
    mismatch. Returns None when the primer is longer than the read or no
    window has at most ``max_mismatches`` mismatches.
    """
    if strand not in ("+", "-", "both"):
        raise ValueError(f"strand must be '+', '-' or 'both', got "
                         f"{strand!r}.")
    mm = _check_mismatches(max_mismatches)
    return _Sites(_read_mask(read)).find(primer, mm, strand)


def _check_primers(seqs) -> Tuple[str, ...]:
    if isinstance(seqs, str):
        seqs = (seqs,)
    seqs = tuple(seqs)
    for s in seqs:
        _primer_masks(s)
    return seqs


@dataclass(frozen=True)
class PrimerPair:
    """A forward and a reverse primer set (sequences 5'->3', each set tried
    in order, the first that binds wins) and whether each must bind for an
    amplicon to be cut. The reverse primers are given as ordered, i.e. as
    they bind the reverse strand; their reverse complements are searched on
    the forward-oriented read."""
    name: str
    forward: Tuple[str, ...]
    reverse: Tuple[str, ...]
    require_forward: bool
    require_reverse: bool

    def __post_init__(self):
        fwd = _check_primers(self.forward)
        rev = _check_primers(self.reverse)
        object.__setattr__(self, "forward", fwd)
        object.__setattr__(self, "reverse", rev)
        object.__setattr__(self, "require_forward", bool(self.require_forward))
        object.__setattr__(self, "require_reverse", bool(self.require_reverse))
        if not fwd and not rev:
            raise ValueError(f"Primer pair {self.name!r} has no primers.")
        if (self.require_forward and not fwd) or (self.require_reverse
                                                 and not rev):
            raise ValueError(f"Primer pair {self.name!r} requires a primer "
                             "set that is empty.")

    def to_dict(self) -> dict:
        """JSON-safe dict (lists of sequences); inverse of
        :meth:`from_dict`."""
        return {"name": self.name, "forward": list(self.forward),
                "reverse": list(self.reverse),
                "require_forward": self.require_forward,
                "require_reverse": self.require_reverse}

    @classmethod
    def from_dict(cls, d) -> "PrimerPair":
        keys = ("name", "forward", "reverse", "require_forward",
                "require_reverse")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"Primer pair dict lacks {', '.join(missing)}.")
        return cls(name=str(d["name"]), forward=tuple(d["forward"]),
                   reverse=tuple(d["reverse"]),
                   require_forward=bool(d["require_forward"]),
                   require_reverse=bool(d["require_reverse"]))


def _bad_spec(spec, why: str = "") -> ValueError:
    return ValueError(
        f"Unknown primer region {spec!r}{': ' + why if why else ''}. "
        f"Accepted forms: a region name ({', '.join(REGIONS)}; any case); "
        f"'FWD-REV' with two primer names (e.g. 'fITS7-ITS4'); or two raw "
        f"IUPAC primer sequences 'SEQ,SEQ' (forward, reverse 5'->3'). "
        f"Known primer names: {', '.join(PRIMERS)}.")


def parse_region(spec: str) -> PrimerPair:
    """The :class:`PrimerPair` of a region spec.

    * ``"ITS1"`` / ``"ITS2"`` (any case): the primers of :data:`REGIONS`.
      ITS1 requires only its reverse (5.8S) site — an ITSx-trimmed full ITS
      has no SSU site and its amplicon starts at the read start; ITS2
      requires only its forward (5.8S) site — the LSU site is often absent
      and the amplicon then runs to the read end.
    * ``"FWD-REV"``: two names of :data:`PRIMERS` (``"fITS7-ITS4"``,
      ``"5.8S-Fun-ITS4-Fun"``; every ``-`` is tried as the separator). A
      primer in the 5.8S is required, an SSU/LSU primer is not.
    * ``"SEQ,SEQ"``: forward and reverse IUPAC sequences, both required.

    Anything else raises ValueError naming the spec and the accepted forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_spec(spec, "empty")
    s = spec.strip()
    regions = {k.upper(): k for k in REGIONS}
    if s.upper() in regions:
        name = regions[s.upper()]
        fwd_names, rev_names = REGIONS[name]
        req_f, req_r = _REGION_REQUIRED.get(name, (True, True))
        return PrimerPair(name=name,
                          forward=tuple(PRIMERS[n] for n in fwd_names),
                          reverse=tuple(PRIMERS[n] for n in rev_names),
                          require_forward=req_f, require_reverse=req_r)
    if "," in s:
        parts = [p.strip().upper() for p in s.split(",")]
        if len(parts) != 2 or not all(parts):
            raise _bad_spec(spec, "expected exactly two sequences")
        try:
            pair = PrimerPair(name=",".join(parts), forward=(parts[0],),
                              reverse=(parts[1],), require_forward=True,
                              require_reverse=True)
        except ValueError as err:
            raise _bad_spec(spec, str(err)) from None
        return pair
    names = {k.upper(): k for k in PRIMERS}
    splits = []
    for i, ch in enumerate(s):
        if ch == "-":
            a, b = s[:i].upper(), s[i + 1:].upper()
            if a in names and b in names:
                splits.append((names[a], names[b]))
    if len(splits) > 1:
        raise _bad_spec(spec, "ambiguous split into primer names "
                        + " / ".join(f"{a} + {b}" for a, b in splits))
    if not splits:
        raise _bad_spec(spec)
    fwd, rev = splits[0]
    if fwd in _REVERSE or rev in _FORWARD:
        raise _bad_spec(spec, f"{fwd} must be a forward primer and {rev} a "
                        f"reverse primer (forward: "
                        f"{', '.join(n for n in PRIMERS if n in _FORWARD)}; "
                        f"reverse: "
                        f"{', '.join(n for n in PRIMERS if n in _REVERSE)})")
    return PrimerPair(name=f"{fwd}-{rev}", forward=(PRIMERS[fwd],),
                      reverse=(PRIMERS[rev],),
                      require_forward=fwd in _INNER,
                      require_reverse=rev in _INNER)


class _Sites:
    """Primer mismatch counts over one read (one orientation), computed
    once per primer and strand and shared by every pair and every search
    window start: cutting a read with every pair of the common regions
    (:func:`.regions.alternatives`) asks the same primer ~4 times."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self._mism = {}
        self._flipped = None

    def flipped(self) -> "_Sites":
        """The same for the reverse complement of the read."""
        if self._flipped is None:
            self._flipped = _Sites(_COMPLEMENT_LUT[self.mask[::-1]])
            self._flipped._flipped = self
        return self._flipped

    def _counts(self, primer: str, strand: str) -> Optional[np.ndarray]:
        key = (primer, strand)
        if key not in self._mism:
            fwd, rc = _primer_masks(primer)
            pm = fwd if strand == "+" else rc
            n, k = self.mask.size, pm.size
            self._mism[key] = None if n < k else k - np.count_nonzero(
                sliding_window_view(self.mask, k) & pm, axis=1)
        return self._mism[key]

    def find(self, primer: str, mm: int, strand: str, offset: int = 0
             ) -> Optional[Site]:
        """Best site (fewest mismatches, then leftmost, then ``"+"``) on
        ``mask[offset:]`` (positions relative to ``offset``), from the
        cached counts; see :func:`find_site`."""
        hits = []
        for st, tie in (("+", 0), ("-", 1)):
            if strand not in (st, "both"):
                continue
            m = self._counts(primer, st)
            if m is None or m.size <= offset:
                continue
            m = m[offset:]
            start = int(np.argmin(m))                      # first minimum
            if m[start] <= mm:
                hits.append((int(m[start]), start, tie, st))
        if not hits:
            return None
        mism, start, _, st = min(hits)
        return Site(start=start, end=start + len(primer), mismatches=mism,
                    strand=st)

    def first(self, primers: Tuple[str, ...], mm: int, strand: str,
              offset: int = 0) -> Optional[Site]:
        for p in primers:
            site = self.find(p, mm, strand, offset)
            if site is not None:
                return site
        return None


def amplicon(read: str, pair: PrimerPair, max_mismatches: int = 2,
             min_length: int = 50, sites: Optional[_Sites] = None
             ) -> Optional[str]:
    """The stretch of ``read`` between the pair's primer sites, primers
    excluded (as ``extract-reads`` / cutadapt return it), 5'->3' in the
    forward primer's direction.

    Orientation: the first forward primer binding on ``"+"`` fixes it; if
    none does but one binds on ``"-"``, the read is reverse-complemented.
    With no forward site at all the reverse primer decides (it binding as
    written, ``"+"``, means the read is reversed). The reverse site is the
    reverse primer's reverse complement, searched only downstream of the
    forward site. A missing primer gives None when required, else the
    amplicon starts at the read start / ends at the read end. None also when
    the amplicon is shorter than ``min_length``. ``sites``: the read's
    :class:`_Sites`, to share primer searches between pairs.
    """
    mm = _check_mismatches(max_mismatches)
    if min_length < 0:
        raise ValueError(f"min_length must be >= 0, got {min_length!r}.")
    if sites is None:
        sites = _Sites(_read_mask(read))
    fwd = sites.first(pair.forward, mm, "+")
    flip = False
    if fwd is None and sites.first(pair.forward, mm, "-") is not None:
        flip = True
    elif fwd is None:
        if (sites.first(pair.reverse, mm, "-") is None
                and sites.first(pair.reverse, mm, "+") is not None):
            flip = True
    if flip:
        read = reverse_complement(read)
        sites = sites.flipped()
        fwd = sites.first(pair.forward, mm, "+")
    if fwd is None and pair.require_forward:
        return None
    start = fwd.end if fwd is not None else 0
    rev = sites.first(pair.reverse, mm, "-", offset=start)
    if rev is None and pair.require_reverse:
        return None
    end = start + rev.start if rev is not None else len(read)
    amp = read[start:end]
    return amp if len(amp) >= min_length else None


def read_sites(read: str) -> _Sites:
    """A :class:`_Sites` for ``read`` to pass to several :func:`amplicon`
    calls."""
    return _Sites(_read_mask(read))


def cut_reads(reads: Iterable[Tuple[str, str]], pair: PrimerPair,
              max_mismatches: int = 2, min_length: int = 50
              ) -> Tuple[List[Tuple[str, str]], List[str]]:
    """:func:`amplicon` of every ``(id, sequence)``: returns the kept
    ``(id, amplicon)`` pairs (input order) and the ids of the reads where
    no amplicon could be cut."""
    kept, dropped = [], []
    for rid, seq in reads:
        amp = amplicon(seq, pair, max_mismatches, min_length)
        if amp is None:
            dropped.append(rid)
        else:
            kept.append((rid, amp))
    return kept, dropped
