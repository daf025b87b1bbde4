"""The fungal ITS primers that :mod:`.primers` searches for and the named
regions they amplify (the catalogue only; the search is in
:mod:`.primers`).

Primers (all 5'->3'):

* SSU, forward: ITS1F (Gardes & Bruns 1993, ``gardes1993its1f``); ITS1 and
  ITS5 (White et al. 1990, ``white1990its``);
* 5.8S, reverse: ITS2 (White et al. 1990);
* 5.8S, forward: ITS3 (White et al. 1990); fITS7 and gITS7 (Ihrmark et al.
  2012, ``ihrmark2012fits7``); ITS86F (Turenne et al. 1999,
  ``turenne1999its86``, as used by Op De Beeck et al. 2014,
  ``opdebeeck2014its86f``); 5.8S-Fun (Taylor et al. 2016,
  ``taylor2016itsfun``);
* LSU, reverse: ITS4 (White et al. 1990); ITS4-Fun (Taylor et al. 2016).

The keys in parentheses are entries of ``q2_barcodemamba/citations.bib``.
"""
from typing import Dict, Tuple

PRIMERS: Dict[str, str] = {
    # forward, SSU (ITS1 side)
    "ITS1F": "CTTGGTCATTTAGAGGAAGTAA",        # Gardes & Bruns 1993
    "ITS1": "TCCGTAGGTGAACCTGCGG",            # White et al. 1990
    "ITS5": "GGAAGTAAAAGTCGTAACAAGG",         # White et al. 1990
    # reverse, 5.8S
    "ITS2": "GCTGCGTTCTTCATCGATGC",           # White et al. 1990
    # forward, 5.8S (ITS2 side)
    "ITS3": "GCATCGATGAAGAACGCAGC",           # White et al. 1990
    "fITS7": "GTGARTCATCGAATCTTTG",           # Ihrmark et al. 2012
    "gITS7": "GTGARTCATCGARTCTTTG",           # Ihrmark et al. 2012
    "ITS86F": "GTGAATCATCGAATCTTTGAA",        # Turenne 1999; Op De Beeck 2014
    "5.8S-Fun": "AACTTTYRRCAAYGGATCWCT",      # Taylor et al. 2016
    # reverse, LSU
    "ITS4": "TCCTCCGCTTATTGATATGC",           # White et al. 1990
    "ITS4-Fun": "AGCCTCCGCTTATTGATATGCTTAART",  # Taylor et al. 2016
}

REGIONS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "ITS1": (("ITS1F", "ITS1", "ITS5"), ("ITS2",)),
    "ITS2": (("fITS7", "gITS7", "ITS86F", "ITS3", "5.8S-Fun"),
             ("ITS4", "ITS4-Fun")),
}

# (require_forward, require_reverse) of the named regions: the primer in the
# 5.8S must bind; the SSU/LSU one may be missing (ITSx-trimmed references
# stop at the region boundaries), the amplicon then runs to the read end.
REGION_REQUIRED = {"ITS1": (False, True), "ITS2": (True, False)}

# Primers binding in the 5.8S (required in a named pair) and the direction
# of every known primer (a named pair must use a forward, then a reverse).
INNER = frozenset({"ITS2", "ITS3", "fITS7", "gITS7", "ITS86F", "5.8S-Fun"})
FORWARD = frozenset({"ITS1F", "ITS1", "ITS5", "ITS3", "fITS7", "gITS7",
                      "ITS86F", "5.8S-Fun"})
REVERSE = frozenset({"ITS2", "ITS4", "ITS4-Fun"})
