"""One classifier for full ITS and its amplicons (region robustness).

Users' queries are rarely what the reference holds: the reference is full
ITS (UNITE), the queries are ITS1 or ITS2 amplicons cut by a primer pair
(ITS1F/ITS1-ITS2, fITS7/gITS7/ITS3-ITS4, ...), or long reads of the whole
region. A network that has only seen reads starting in the SSU does not
know a read that starts in the 5.8S, and the k-mer Jaccard index of a
200 bp amplicon against the 600 bp read it came from is only ~1/3.

Three things, all computed from the reference itself at fit time
(:mod:`.primers` finds the primer sites):

* **Cut-outs in the memory** (:func:`cutouts`): for each reference read
  its ITS1 and ITS2 amplicons are added to the reference memory with the
  read's lineage, so an amplicon query finds amplicons of its kind. A
  read that is already one region has no inner primer site and adds
  nothing, so a one-region reference is unchanged.
* **Cut-outs in validation**: the held-out reads are asked as full reads
  and as their amplicons, so the epoch, the neighbour mixture, the
  calibrator and the threshold are chosen over the mix of queries the
  classifier will see.
* **Region augmentation** (:func:`alternatives`): in each epoch a share
  of the training reads is replaced by one of its amplicons, cut with each
  primer of the common pairs (their sites differ by tens of bases, which
  is also a window augmentation).

``query_region`` (:func:`cut_reference`) instead specialises a classifier
to one primer pair, like ``feature-classifier extract-reads`` (Bokulich et
al. 2018): the reference is cut to that amplicon before fitting; reads
where the amplicon cannot be found are kept whole, so no species is lost.
"""
from typing import List, Sequence, Tuple

import numpy as np

from .primers import (PRIMERS, REGIONS, PrimerPair, amplicon, parse_region,
                      read_sites)

# a cut-out must be clearly shorter than its read to be worth a memory
# entry (a read that is already ITS2 would otherwise add itself again)
MAX_FRACTION = 0.9
DEFAULT_REGIONS = ("ITS1", "ITS2")


def _single_pairs(region: str) -> List[PrimerPair]:
    """Every forward x reverse primer of a region as its own pair, plus
    the outer primer left open (an ITSx-trimmed read has no SSU/LSU
    site)."""
    base = parse_region(region)
    fwds = [(PRIMERS[n],) for n in REGIONS[region][0]]
    revs = [(PRIMERS[n],) for n in REGIONS[region][1]]
    if not base.require_forward:
        fwds.append(())
    if not base.require_reverse:
        revs.append(())
    return [PrimerPair(f"{region}:{i}.{j}", f, r,
                       base.require_forward and bool(f),
                       base.require_reverse and bool(r))
            for i, f in enumerate(fwds) for j, r in enumerate(revs)]


def _keep(cut, read: str, min_length: int) -> bool:
    return cut is not None and min_length <= len(cut) \
        <= MAX_FRACTION * len(read)


def cutouts(seqs: Sequence[str], min_length: int,
            regions: Sequence[str] = DEFAULT_REGIONS
            ) -> Tuple[np.ndarray, List[str], List[str]]:
    """The amplicons of ``regions`` cut from each read with the region's
    default primers (:func:`.primers.parse_region`): (index of the read
    each cut-out came from, cut-outs, region of each), reads in order."""
    pairs = [(r, parse_region(r)) for r in regions]
    parent, cut, region = [], [], []
    for i, s in enumerate(seqs):
        sites = read_sites(s)
        for name, pair in pairs:
            a = amplicon(s, pair, min_length=min_length, sites=sites)
            if _keep(a, s, min_length):
                parent.append(i)
                cut.append(a)
                region.append(name)
    return np.asarray(parent, dtype=np.int64), cut, region


def alternatives(seqs: Sequence[str], min_length: int,
                 regions: Sequence[str] = DEFAULT_REGIONS
                 ) -> List[List[str]]:
    """For each read, its distinct amplicons over every single primer of
    the common pairs of ``regions`` (empty when it has none)."""
    pairs = [p for r in regions for p in _single_pairs(r)]
    out = []
    for s in seqs:
        seen, sites = [], read_sites(s)
        for pair in pairs:
            a = amplicon(s, pair, min_length=min_length, sites=sites)
            if _keep(a, s, min_length) and a not in seen:
                seen.append(a)
        out.append(seen)
    return out


def pick_alternatives(rows: Sequence[int], alts: Sequence[Sequence[str]],
                      seqs: Sequence[str], p: float,
                      rng: np.random.Generator) -> List[str]:
    """The reads of ``rows``, each replaced with probability ``p`` by one
    of its alternatives (drawn uniformly), when it has any."""
    out = []
    for i in rows:
        a = alts[i]
        if a and rng.random() < p:
            out.append(a[int(rng.integers(len(a)))])
        else:
            out.append(seqs[i])
    return out


def cut_reference(seqs: Sequence[str], spec: str, min_length: int
                  ) -> Tuple[List[str], int, PrimerPair]:
    """The reference cut to the amplicon of ``spec`` (a region name, a
    primer pair "FWD-REV" or two sequences "SEQ,SEQ"; see
    :func:`.primers.parse_region`): (reads, how many were cut, the pair).
    Reads where the amplicon is not found are kept whole."""
    pair = parse_region(spec)
    out, n_cut = [], 0
    for s in seqs:
        a = amplicon(s, pair, min_length=min_length)
        if a is not None and len(a) < len(s):
            out.append(a)
            n_cut += 1
        else:
            out.append(s)
    return out, n_cut, pair
