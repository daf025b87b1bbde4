"""Primer sites and in-silico amplicons (q2_barcodemamba.core.primers) on
hand-made reads, plus one check on the bundled real full-ITS yeast reads."""
import gzip
import json
import os
import random

import pytest

from q2_barcodemamba.core.primers import (PRIMERS, REGIONS, PrimerPair, Site,
                                          amplicon, cut_reads, find_site,
                                          parse_region, reverse_complement)

FITS7, ITS4 = PRIMERS["fITS7"], PRIMERS["ITS4"]
ITS2_REV = PRIMERS["ITS2"]
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "R": "AG", "Y": "CT",
         "S": "CG", "W": "AT", "K": "GT", "M": "AC", "B": "CGT", "D": "AGT",
         "H": "ACT", "V": "ACG", "N": "ACGT"}
YEASTS = os.path.join(os.path.dirname(__file__), "..", "data",
                      "its_full_cbs_yeasts.fasta.gz")


def background(n: int, seed: int) -> str:
    """A random ACGT stretch that holds no primer site (checked)."""
    rng = random.Random(seed)
    while True:
        s = "".join(rng.choice("ACGT") for _ in range(n))
        if all(find_site(s, p, max_mismatches=4) is None
               for p in PRIMERS.values()):
            return s


BG1, BG2, BG3 = background(40, 1), background(40, 2), background(40, 3)
INSERT = background(120, 4)


def substitute(seq: str, positions) -> str:
    """``seq`` with a different base at each position (never an N)."""
    s = list(seq)
    for i in positions:
        s[i] = {"A": "C", "C": "G", "G": "T", "T": "A"}[s[i]]
    return "".join(s)


# ---------------------------------------------------------------- find_site

def test_exact_match_plus_strand():
    read = BG1 + ITS4 + BG2
    assert find_site(read, ITS4) == Site(40, 40 + len(ITS4), 0, "+")
    assert find_site(read, ITS4, strand="+") == Site(40, 60, 0, "+")
    assert find_site(read, ITS4, strand="-") is None


def test_exact_match_minus_strand():
    read = BG1 + reverse_complement(ITS4) + BG2
    assert find_site(read, ITS4) == Site(40, 60, 0, "-")
    assert find_site(read, ITS4, strand="+") is None
    # the whole read reverse-complemented: the primer matches as written
    rc = reverse_complement(read)
    assert find_site(rc, ITS4) == Site(40, 60, 0, "+")


def test_reverse_complement_is_iupac_aware():
    assert reverse_complement("ACGTRYKMBVDHSWN") == "NWSDHBVKMRYACGT"
    assert reverse_complement("ACGT") == "ACGT"
    assert reverse_complement("AACCR") == "YGGTT"
    assert reverse_complement("KMBVDHSWN") == "NWSDHBVKM"
    assert reverse_complement("acgtn") == "nacgt"
    for code in IUPAC:
        assert reverse_complement(reverse_complement(code)) == code


@pytest.mark.parametrize("code", sorted(IUPAC))
def test_iupac_code_matches_its_bases_only(code):
    left, right = "GATTACAGG", "CCTTGAAC"
    primer = left + code + right
    for base in "ACGT":
        site = find_site(left + base + right, primer, max_mismatches=1,
                         strand="+")
        assert site is not None
        assert site.mismatches == (0 if base in IUPAC[code] else 1), base
        if base not in IUPAC[code]:
            assert find_site(left + base + right, primer, max_mismatches=0,
                             strand="+") is None


def test_degenerate_real_primer_matches_every_expansion():
    primer = PRIMERS["5.8S-Fun"]                       # Y R R Y W inside
    for pick in range(2):
        read = "".join(IUPAC[c][pick % len(IUPAC[c])] for c in primer)
        assert find_site(BG1 + read + BG2, primer,
                         max_mismatches=0) == Site(40, 61, 0, "+")


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_mismatches_counted_and_limit_respected(k):
    site_seq = substitute(ITS4, [2, 7, 13][:k])
    read = BG1 + site_seq + BG2
    assert find_site(read, ITS4, max_mismatches=3) == Site(40, 60, k, "+")
    assert find_site(read, ITS4, max_mismatches=k) == Site(40, 60, k, "+")
    if k:
        assert find_site(read, ITS4, max_mismatches=k - 1) is None
    if k == 3:
        assert find_site(read, ITS4) is None            # default 2


def test_n_in_read_is_a_mismatch():
    site_seq = ITS4[:5] + "N" + ITS4[6:]
    read = BG1 + site_seq + BG2
    assert find_site(read, ITS4).mismatches == 1
    assert find_site(read, ITS4, max_mismatches=0) is None
    # even against an N in the primer
    assert find_site("ACNTA", "ACNTA", max_mismatches=1).mismatches == 1
    assert find_site("N" * 30, "ACGT", max_mismatches=3) is None


def test_lower_case_and_rna_reads():
    read = (BG1 + ITS4 + BG2).lower()
    assert find_site(read, ITS4) == Site(40, 60, 0, "+")
    assert find_site((BG1 + ITS4).replace("T", "U"), ITS4).start == 40


def test_fewest_mismatches_win_over_leftmost():
    read = BG1 + substitute(ITS4, [4]) + BG2 + ITS4 + BG3
    assert find_site(read, ITS4) == Site(100, 120, 0, "+")


def test_leftmost_wins_among_equal_mismatches():
    read = BG1 + ITS4 + BG2 + ITS4 + BG3
    assert find_site(read, ITS4).start == 40
    # equal mismatches on both strands: the leftmost, whatever its strand
    read = BG1 + reverse_complement(ITS4) + BG2 + ITS4 + BG3
    assert find_site(read, ITS4) == Site(40, 60, 0, "-")
    read = BG1 + ITS4 + BG2 + reverse_complement(ITS4) + BG3
    assert find_site(read, ITS4) == Site(40, 60, 0, "+")


def test_plus_preferred_on_full_tie():
    palindrome = "GAATTCCGGAATTC"            # its own reverse complement
    assert reverse_complement(palindrome) == palindrome
    assert find_site(BG1 + palindrome + BG2, palindrome).strand == "+"


def test_absent_and_too_long_primer_give_none():
    assert find_site(BG1 + BG2, ITS4) is None
    assert find_site(ITS4[:15], ITS4, max_mismatches=10) is None
    assert find_site("", ITS4) is None


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="strand"):
        find_site(BG1, ITS4, strand="forward")
    with pytest.raises(ValueError, match="non-IUPAC.*'X'"):
        find_site(BG1, "ACGTX")
    with pytest.raises(ValueError, match="max_mismatches"):
        find_site(BG1, ITS4, max_mismatches=-1)


# ----------------------------------------------------------------- amplicon

def fits7_its4_read(insert: str = INSERT) -> str:
    return BG1 + FITS7 + insert + reverse_complement(ITS4) + BG2


def test_amplicon_excludes_primers():
    pair = parse_region("fITS7-ITS4")
    assert amplicon(fits7_its4_read(), pair) == INSERT
    # primer sites with allowed mismatches are still cut exactly
    read = (BG1 + substitute(FITS7, [3]) + INSERT
            + reverse_complement(substitute(ITS4, [0, 9])) + BG2)
    assert amplicon(read, pair) == INSERT
    assert amplicon(read, pair, max_mismatches=1) is None   # fITS7 required


def test_reversed_read_gives_the_same_amplicon():
    pair = parse_region("fITS7-ITS4")
    read = fits7_its4_read()
    assert amplicon(reverse_complement(read), pair) == INSERT
    assert amplicon(reverse_complement(read), parse_region("ITS2")) == INSERT


def test_missing_optional_outer_primer_runs_to_read_end():
    # ITS2 / fITS7-ITS4: no LSU (ITS4) site -> up to the read end
    read = BG1 + FITS7 + INSERT
    for spec in ("ITS2", "fITS7-ITS4"):
        assert amplicon(read, parse_region(spec)) == INSERT
        assert amplicon(reverse_complement(read),
                        parse_region(spec)) == INSERT


def test_missing_optional_outer_primer_starts_at_read_start():
    # ITS1 on an ITSx-trimmed read: no SSU site, the 5.8S (ITS2) site is
    # found; orientation then comes from the reverse primer
    read = INSERT + reverse_complement(ITS2_REV) + BG2
    for spec in ("ITS1", "ITS1F-ITS2"):
        assert amplicon(read, parse_region(spec)) == INSERT
        assert amplicon(reverse_complement(read),
                        parse_region(spec)) == INSERT
    # with the SSU site the amplicon starts after it
    ssu = BG1 + PRIMERS["ITS1"] + read
    assert amplicon(ssu, parse_region("ITS1")) == INSERT
    assert amplicon(reverse_complement(ssu), parse_region("ITS1")) == INSERT


def test_missing_required_primer_gives_none():
    assert amplicon(BG1 + INSERT + reverse_complement(ITS4) + BG2,
                    parse_region("ITS2")) is None               # no fITS7
    assert amplicon(BG1 + PRIMERS["ITS1"] + INSERT + BG2,
                    parse_region("ITS1")) is None               # no ITS2
    pair = parse_region(f"{FITS7},{ITS4}")
    assert amplicon(BG1 + FITS7 + INSERT, pair) is None
    assert amplicon(fits7_its4_read(), pair) == INSERT
    assert amplicon(BG1 + BG2 + BG3, parse_region("fITS7-ITS4")) is None


def test_reverse_site_searched_only_downstream_of_forward_site():
    upstream = BG3 + reverse_complement(ITS4)
    read = upstream + fits7_its4_read()
    assert amplicon(read, parse_region("fITS7-ITS4")) == INSERT
    # only an upstream reverse site: not used (required -> None,
    # optional -> runs to the read end)
    read = BG3 + reverse_complement(ITS4) + BG1 + FITS7 + INSERT
    assert amplicon(read, parse_region(f"{FITS7},{ITS4}")) is None
    assert amplicon(read, parse_region("fITS7-ITS4")) == INSERT


def test_forward_primers_tried_in_order():
    other = PRIMERS["ITS3"]
    read = BG1 + other + BG3 + FITS7 + INSERT + reverse_complement(ITS4)
    pair = PrimerPair("t", (FITS7, other), (ITS4,), True, False)
    assert amplicon(read, pair) == INSERT
    pair = PrimerPair("t", (other, FITS7), (ITS4,), True, False)
    assert amplicon(read, pair) == BG3 + FITS7 + INSERT


def test_min_length():
    insert = INSERT[:60]
    read = fits7_its4_read(insert)
    pair = parse_region("fITS7-ITS4")
    assert amplicon(read, pair, min_length=60) == insert
    assert amplicon(read, pair, min_length=61) is None
    assert amplicon(read, pair) == insert                 # default 50
    assert amplicon(fits7_its4_read(INSERT[:49]), pair) is None


def test_cut_reads_keeps_order_and_lists_failures():
    pair = parse_region("fITS7-ITS4")
    reads = [("a", fits7_its4_read()), ("b", BG1 + BG2),
             ("c", reverse_complement(fits7_its4_read(INSERT[:70]))),
             ("d", fits7_its4_read(INSERT[:10]))]
    kept, dropped = cut_reads(iter(reads), pair)
    assert kept == [("a", INSERT), ("c", INSERT[:70])]
    assert dropped == ["b", "d"]


# ------------------------------------------------------------- parse_region

@pytest.mark.parametrize("spec", ["ITS1", "its1", " Its1 "])
def test_parse_region_its1(spec):
    pair = parse_region(spec)
    assert pair.name == "ITS1"
    assert pair.forward == tuple(PRIMERS[n] for n in REGIONS["ITS1"][0])
    assert pair.reverse == (PRIMERS["ITS2"],)
    assert (pair.require_forward, pair.require_reverse) == (False, True)


@pytest.mark.parametrize("spec", ["ITS2", "its2"])
def test_parse_region_its2(spec):
    pair = parse_region(spec)
    assert pair.name == "ITS2"
    assert pair.forward == tuple(PRIMERS[n] for n in REGIONS["ITS2"][0])
    assert pair.forward[0] == FITS7
    assert pair.reverse == (ITS4, PRIMERS["ITS4-Fun"])
    assert (pair.require_forward, pair.require_reverse) == (True, False)


@pytest.mark.parametrize("spec,fwd,rev,req", [
    ("fITS7-ITS4", "fITS7", "ITS4", (True, False)),
    ("5.8S-Fun-ITS4-Fun", "5.8S-Fun", "ITS4-Fun", (True, False)),
    ("ITS1F-ITS2", "ITS1F", "ITS2", (False, True)),
    ("gITS7-ITS4-Fun", "gITS7", "ITS4-Fun", (True, False)),
    ("its1f-its2", "ITS1F", "ITS2", (False, True)),
])
def test_parse_region_named_pairs(spec, fwd, rev, req):
    pair = parse_region(spec)
    assert pair.name == f"{fwd}-{rev}"
    assert pair.forward == (PRIMERS[fwd],)
    assert pair.reverse == (PRIMERS[rev],)
    assert (pair.require_forward, pair.require_reverse) == req


def test_parse_region_raw_sequences():
    pair = parse_region("gtgartcatcgaatctttg, TCCTCCGCTTATTGATATGC")
    assert pair.forward == (FITS7,) and pair.reverse == (ITS4,)
    assert pair.require_forward and pair.require_reverse


def test_primer_pair_dict_round_trip():
    for spec in ("ITS1", "ITS2", "5.8S-Fun-ITS4-Fun", f"{FITS7},{ITS4}"):
        pair = parse_region(spec)
        d = json.loads(json.dumps(pair.to_dict()))
        assert PrimerPair.from_dict(d) == pair
    with pytest.raises(ValueError, match="require_reverse"):
        PrimerPair.from_dict({"name": "x", "forward": [FITS7],
                              "reverse": [ITS4], "require_forward": True})


@pytest.mark.parametrize("spec", ["ITS9", "fITS7-ITS9", "ACGT,XYZ",
                                  "ACGT,", "ITS4-fITS7", "", "ITS1/ITS2"])
def test_parse_region_bad_spec(spec):
    with pytest.raises(ValueError) as err:
        parse_region(spec)
    msg = str(err.value)
    assert repr(spec) in msg
    for name in ("ITS1", "ITS2", "fITS7", "5.8S-Fun", "ITS4-Fun",
                 "FWD-REV", "SEQ,SEQ"):
        assert name in msg


# ------------------------------------------------------- bundled real reads

def _fasta_gz(path):
    recs, rid, buf = [], None, []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if rid is not None:
                    recs.append((rid, "".join(buf)))
                rid, buf = line[1:].split()[0], []
            elif line:
                buf.append(line)
    if rid is not None:
        recs.append((rid, "".join(buf)))
    return recs


@pytest.mark.skipif(not os.path.exists(YEASTS),
                    reason="bundled full-ITS yeast reads not present")
def test_bundled_full_its_reads_give_its_amplicons():
    reads = _fasta_gz(YEASTS)
    assert len(reads) > 1000
    kept, _ = cut_reads(reads, parse_region("ITS2"))
    good = [a for _, a in kept if 100 <= len(a) <= 400]
    assert len(good) >= 0.8 * len(reads)
    kept, _ = cut_reads(reads, parse_region("ITS1"))
    good = [a for _, a in kept if 50 <= len(a) <= 600]
    assert len(good) >= 0.8 * len(reads)
