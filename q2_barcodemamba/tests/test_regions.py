"""Region robustness (core/regions.py): amplicon cut-outs of real reads,
region augmentation, query_region, and what fit() does with them."""
import numpy as np
import pytest

from q2_barcodemamba.core.config import TrainConfig
from q2_barcodemamba.core.primers import (amplicon, parse_region,
                                          reverse_complement)
from q2_barcodemamba.core.regions import (alternatives, cut_reference,
                                          cutouts, pick_alternatives)
from q2_barcodemamba.core.train import variant_tokens
from q2_barcodemamba.core.augment import AugmentConfig
from q2_barcodemamba.tests.helpers import yeasts


@pytest.fixture(scope="module")
def reads():
    _, raw, _ = yeasts()
    return raw[:300]


def _inside(cut: str, read: str) -> bool:
    return cut in read or cut in reverse_complement(read)


def test_cutouts_are_parts_of_their_reads(reads):
    parent, cut, region = cutouts(reads, 20)
    assert len(parent) == len(cut) == len(region)
    # nearly every full-ITS yeast read gives both amplicons
    assert region.count("ITS1") >= 0.95 * len(reads)
    assert region.count("ITS2") >= 0.95 * len(reads)
    for p, c in zip(parent, cut):
        assert _inside(c, reads[p])
        assert 20 <= len(c) <= 0.9 * len(reads[p])
    assert list(parent) == sorted(parent)


def test_a_one_region_reference_gets_no_cutouts(reads):
    """ITS2 amplicons have no inner primer site left: nothing is added, so
    a reference that is already one region is unchanged."""
    pair = parse_region("fITS7-ITS4")
    its2 = [cut_reference([s], "fITS7-ITS4", 20)[0][0] for s in reads[:50]]
    assert all(len(a) < len(s) for a, s in zip(its2, reads[:50]))
    parent, cut, region = cutouts(its2, 20)
    assert region.count("ITS2") == 0
    assert pair.require_forward and not pair.require_reverse


def test_alternatives_are_distinct_amplicons(reads):
    alts = alternatives(reads[:40], 20)
    assert len(alts) == 40
    assert np.mean([len(a) for a in alts]) >= 4  # several primers per read
    for s, a in zip(reads, alts):
        assert len(set(a)) == len(a)
        assert all(_inside(x, s) for x in a)


def test_region_augmentation_is_seeded():
    seqs = ["A" * 100, "C" * 100, "G" * 100]
    alts = [["A" * 50, "A" * 60], [], ["G" * 40]]
    rows = [0, 1, 2] * 20
    a = pick_alternatives(rows, alts, seqs, 0.5, np.random.default_rng(3))
    b = pick_alternatives(rows, alts, seqs, 0.5, np.random.default_rng(3))
    assert a == b
    assert {x for x, r in zip(a, rows) if r == 1} == {"C" * 100}
    assert {len(x) for x, r in zip(a, rows) if r == 0} == {100, 50, 60}
    assert pick_alternatives(rows, alts, seqs, 0.0,
                             np.random.default_rng(3)) == [seqs[r]
                                                           for r in rows]

    class Tok:
        def encode(self, s, n):
            return [[len(x)] for x in s]
    v1 = variant_tokens(seqs, Tok(), 512, AugmentConfig(p=0), 7, alts, 0.5)
    v2 = variant_tokens(seqs, Tok(), 512, AugmentConfig(p=0), 7, alts, 0.5)
    assert [v1(rows) for _ in range(3)] == [v2(rows) for _ in range(3)]


def test_cut_reference_keeps_reads_without_a_site(reads):
    cut, n_cut, pair = cut_reference(list(reads[:30]) + ["ACGT" * 40],
                                     "ITS2", 20)
    assert n_cut == 30 and cut[-1] == "ACGT" * 40
    assert pair.name == "ITS2"


def test_noisy_validation_copies_are_seeded_and_never_in_a_memory(reads):
    from q2_barcodemamba.core.augment import noisy_copies
    from q2_barcodemamba.core.validation import Rows
    a = noisy_copies(reads[:20], 0.05, 20, 1)
    assert a == noisy_copies(reads[:20], 0.05, 20, 1)
    assert a != noisy_copies(reads[:20], 0.05, 20, 2)
    assert noisy_copies(reads[:20], 0.0, 20, 1) == []
    diff = [sum(x != y for x, y in zip(s, t)) / len(s)
            for s, t in zip(reads[:20], a)]
    assert 0 < np.mean(diff) and all(len(t) >= 20 for t in a)
    val = np.array([3, 5, 7])
    rows = Rows(list(reads[:10]), TrainConfig(validation_errors=0.05),
                 val, lambda m: None)
    n = len(rows.seqs)
    # reads, their 2 amplicons each, an error copy of each validation row
    assert n == 10 + 20 + 9
    assert sorted(rows.parent[30:]) == [3, 3, 3, 5, 5, 5, 7, 7, 7]
    assert rows.n_memory == 30
    assert set(rows.of(val, memory=True)) < set(rows.of(val))
    assert all(r < 30 for r in rows.of(val, memory=True))
    assert {r for r in rows.of(val) if r >= 30} == set(range(30, 39))


def test_single_region_references_get_no_cutouts(reads):
    """Amplicons join memory and validation only when most reads hold
    every region: full-ITS reads do, their ITS2 amplicons (a single-region
    reference with a few full-ITS reads among them) do not."""
    from q2_barcodemamba.core.regions import cutouts
    from q2_barcodemamba.core.validation import MULTI_REGION, Rows
    parent, cut, region = cutouts(list(reads[:10]), 20)
    its2 = [a for a, r in zip(cut, region) if r == "ITS2"]
    assert len(its2) == 10
    msgs = []
    mixed = its2[:8] + list(reads[:2])      # 20 % full ITS
    rows = Rows(mixed, TrainConfig(validation_errors=0.0), np.array([0]),
                msgs.append)
    assert rows.seqs == mixed and rows.n_memory == 10
    assert sum(rows.counts.values()) == 0
    assert any("single-region reference" in m for m in msgs)
    k = int(np.ceil(MULTI_REGION * 10))     # enough full-ITS reads
    rows = Rows(its2[:10 - k] + list(reads[:k]),
                TrainConfig(validation_errors=0.0), np.array([0]),
                lambda m: None)
    assert rows.n_memory == 10 + 2 * k


def test_query_region_is_checked():
    TrainConfig(query_region="fITS7-ITS4").validate()
    TrainConfig(query_region="any").validate()
    with pytest.raises(ValueError, match="ITS9"):
        TrainConfig(query_region="ITS9").validate()
    with pytest.raises(ValueError, match="region_augment"):
        TrainConfig(region_augment=1.5).validate()
    with pytest.raises(ValueError, match="validation_errors"):
        TrainConfig(validation_errors=0.5).validate()


# ------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def fitted():
    """Two tiny classifiers fitted on the same full-ITS yeast reads (a
    leakage-free split holding out haplotypes and species): region-robust
    (the default) and region-unaware; and the held-out reads."""
    from q2_barcodemamba.core.classifier import TaxonomicClassifier
    from q2_barcodemamba.core.data import clean_sequence
    from q2_barcodemamba.core.split import grouped_split
    from q2_barcodemamba.core.taxonomy import parse_taxonomy
    ids, raw, tax = yeasts()
    seqs = [clean_sequence(s, i) for i, s in zip(ids, raw)]
    lineages = parse_taxonomy(ids, [tax[i] for i in ids])
    ref, query = grouped_split(seqs, lineages, 0.15, seed=3)

    def fit(**kw):
        tc = TrainConfig(epochs=3, random_seed=0, n_threads=2, **kw)
        return TaxonomicClassifier("tiny", train_config=tc).fit(
            [ids[i] for i in ref], [seqs[i] for i in ref],
            {ids[i]: tax[ids[i]] for i in ref}, progress=lambda m: None)
    return (fit(), fit(region_cutouts=False, region_augment=0.0),
            [seqs[i] for i in query], [lineages[i] for i in query])


def _right_calls(clf, seqs, lineages) -> float:
    from q2_barcodemamba.core.inference import right_call_curve
    y, _ = clf.labels.encode(lineages)
    chosen, conf = clf.predict_ranks(seqs)
    return right_call_curve(chosen, conf, y,
                            [clf.calibration["best_confidence"]])[0]


def test_region_robust_training_classifies_its2_amplicons_better(fitted):
    """ITS2 amplicons (fITS7-ITS4) of held-out full-ITS reads: the
    region-robust classifier makes more right calls than the same fit
    without amplicons in memory, validation and training. Cut-outs that
    were garbage, or never reached the memory, would not gain; required:
    +5 points (the benchmark's tiny-preset gap on ITS2 amplicons is 30
    points, docs/benchmarks.md)."""
    robust, unaware, seqs, lineages = fitted
    pair = parse_region("fITS7-ITS4")
    keep = [(a, lin) for s, lin in zip(seqs, lineages)
            if (a := amplicon(s, pair)) is not None]
    assert len(keep) > 0.9 * len(seqs)
    amp, lin = [a for a, _ in keep], [x for _, x in keep]
    r_robust = _right_calls(robust, amp, lin)
    r_unaware = _right_calls(unaware, amp, lin)
    assert r_robust >= r_unaware + 0.05, (r_robust, r_unaware)
    # full-ITS queries are not paid for it (within 5 points)
    f_robust = _right_calls(robust, seqs, lineages)
    f_unaware = _right_calls(unaware, seqs, lineages)
    assert f_robust >= f_unaware - 0.05, (f_robust, f_unaware)


def test_reads_unlike_the_reference_get_no_confident_species(fitted):
    """Random sequence, a read's bases shuffled, and 60 bp of the
    conserved 5.8S gene are never called to species (docs/how-it-works.md,
    regions)."""
    robust, _, seqs, _ = fitted
    rng = np.random.default_rng(0)
    odd = ["".join(rng.choice(list("ACGT"), 500)) for _ in range(20)]
    odd += ["".join(rng.permutation(list(s))) for s in seqs[:20]]
    site = parse_region("fITS7-ITS4")
    for s in seqs[:20]:
        # the 60 bp before the fITS7 site end: 5.8S, shared by all fungi
        a = amplicon(s, site)
        k = s.find(a) if a else -1
        if k >= 60:
            odd.append(s[k - 60:k])
    assert len(odd) >= 55
    calls = list(robust.predict([(str(i), s) for i, s in enumerate(odd)],
                                progress=lambda m: None))
    deepest = [len(t.split(";")) if t != "Unassigned" else 0
               for _, t, _ in calls]
    assert max(deepest) < 7, [c for c, d in zip(calls, deepest) if d == 7]
