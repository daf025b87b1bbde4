"""Reference memory, k-mer similarity, calibrator, augmentation and the
held-out genera of validation (issue 13)."""
import json

import numpy as np
import pytest
import torch

from q2_barcodemamba.core.abstention import Caller, Mixture
from q2_barcodemamba.core.augment import AugmentConfig, augment_batch, vary
from q2_barcodemamba.core.calibrator import (RankCalibrator, group_folds,
                                             out_of_fold)
from q2_barcodemamba.core.losses import supervised_contrastive
from q2_barcodemamba.core.kmers import KmerIndex, KmerSets
from q2_barcodemamba.core.memory import ReferenceMemory
from q2_barcodemamba.core.split import hold_out_genera
from q2_barcodemamba.core.taxonomy import parse_taxonomy

from q2_barcodemamba.tests.helpers import yeasts


def random_reads(rng, n, length=120):
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def test_embedding_search_equals_brute_force():
    rng = np.random.default_rng(0)
    ref = torch.as_tensor(rng.normal(size=(300, 16)), dtype=torch.float32)
    mem = ReferenceMemory.build(ref, np.arange(300) % 7, random_reads(
        rng, 300, 30))
    q = torch.as_tensor(rng.normal(size=(25, 16)), dtype=torch.float32)
    import q2_barcodemamba.core.memory as memory
    old, memory.SEARCH_BLOCK = memory.SEARCH_BLOCK, 64   # several blocks
    try:
        idx, sim = mem.search(q, 10)
    finally:
        memory.SEARCH_BLOCK = old
    ref16 = torch.nn.functional.normalize(ref, dim=1).half().float()
    brute = torch.nn.functional.normalize(q, dim=1) @ ref16.T
    top_s, top_i = brute.topk(10, dim=1)
    np.testing.assert_allclose(sim.numpy(), top_s.numpy(), atol=1e-5)
    assert (idx == top_i).float().mean() > 0.98   # ties in float16 aside
    assert (sim[:, :-1] >= sim[:, 1:]).all()


def test_kmer_jaccard_and_candidates_are_exact():
    rng = np.random.default_rng(1)
    ref = random_reads(rng, 80)
    # queries: mutated copies of reference reads 5, 17, 42
    queries = []
    for i in (5, 17, 42):
        s = list(ref[i])
        for p in rng.choice(len(s), 4, replace=False):
            s[p] = "ACGT"[("ACGT".index(s[p]) + 1) % 4]
        queries.append("".join(s))
    R, Q = KmerSets(ref, 8), KmerSets(queries, 8)
    cand = np.tile(np.arange(80), (3, 1))
    got = R.jaccard(Q, cand)

    def kmers(s):
        return {s[i:i + 8] for i in range(len(s) - 7)}
    want = np.array([[len(kmers(q) & kmers(r)) / len(kmers(q) | kmers(r))
                      for r in ref] for q in queries])
    np.testing.assert_allclose(got, want, atol=1e-9)
    index = KmerIndex(KmerSets(ref, 10), max_df=1.0)
    found = index.candidates(KmerSets(queries, 10), 5)
    for row, true in zip(found, (5, 17, 42)):
        assert true in row


def test_votes_weigh_neighbours_and_skip_reads_without_lineage():
    mem = ReferenceMemory.build(torch.eye(4), np.array([0, 1, 1, -1]),
                                ["ACGT" * 6] * 4)
    idx = np.array([[0, 1, 2, 3]])
    sim = np.array([[0.9, 0.8, 0.8, 0.99]])
    p = mem.votes(idx, sim, 4, 0.1, 2)
    w0, w1 = np.exp(0.0), 2 * np.exp(-1.0)
    np.testing.assert_allclose(p.numpy(), [[w0 / (w0 + w1), w1 / (w0 + w1)]],
                               rtol=1e-5)
    # nobody votes: uniform
    p = mem.votes(np.array([[3]]), np.array([[1.0]]), 1, 0.1, 2)
    np.testing.assert_allclose(p.numpy(), [[0.5, 0.5]])


def test_memory_round_trips_through_tensors():
    rng = np.random.default_rng(2)
    reads = random_reads(rng, 30, 50)
    mem = ReferenceMemory.build(torch.randn(30, 8), np.arange(30) - 1, reads)
    back = ReferenceMemory.from_tensors(mem.to_tensors())
    assert torch.equal(back.embeddings, mem.embeddings)
    assert back.embeddings.dtype == torch.float16
    assert torch.equal(back.leaf, mem.leaf)
    nb_a = mem.neighbours(reads[:5], torch.randn(5, 8).abs(), 8, 4)
    nb_b = back.neighbours(reads[:5], torch.randn(5, 8).abs(), 8, 0)
    assert np.array_equal(nb_a.kmer_idx, nb_b.kmer_idx)
    assert (nb_a.kmer_idx[:, 0] == np.arange(5)).all()    # itself first
    assert nb_b.emb_idx.shape == (5, 0)
    assert ReferenceMemory.from_tensors({}) is None
    with pytest.raises(ValueError, match="lacks"):
        ReferenceMemory.from_tensors({"memory.leaf": mem.leaf})


def test_calibrator_is_monotone_and_stored_as_json():
    rng = np.random.default_rng(3)
    n, R = 400, 3
    mass = rng.uniform(0.01, 0.99, (n, R))
    top = rng.uniform(0, 1, (n, R))
    # truth: right more often with more mass and higher similarity
    right = rng.uniform(size=(n, R)) < 0.5 * mass + 0.5 * top
    X = np.stack([mass, top], 2)
    cal = RankCalibrator.fit(X, right, ("mass", "kmer_top"))
    assert (cal.weight >= 0).all()
    grid = np.linspace(0.02, 0.98, 9)
    for f in range(2):
        Xs = np.full((9, R, 2), 0.5)
        Xs[:, :, f] = grid[:, None]
        c = cal.confidence(Xs, monotone_ranks=False)
        assert (np.diff(c, axis=0) >= -1e-12).all()
        assert c[-1, 0] > c[0, 0] + 0.1      # it learnt the signal
    conf = cal.confidence(X)
    assert (np.diff(conf, axis=1) <= 1e-12).all()     # deeper never higher
    back = RankCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(back.confidence(X), conf)
    # out of fold: each read scored by a calibrator that did not see it
    folds = group_folds([str(i // 4) for i in range(n)], 5)
    oof = out_of_fold(X, right, np.ones((n, R), bool), ("mass", "kmer_top"),
                      folds)
    assert oof.shape == (n, R) and not np.allclose(oof, conf)


def test_caller_without_memory_is_the_summed_walk():
    from q2_barcodemamba.core.taxonomy import LabelEncoder
    lin = parse_taxonomy(["a", "b", "c"], ["k__A;p__X", "k__A;p__Y",
                                           "k__B;p__Z"])
    enc = LabelEncoder.fit(lin, 2)
    caller = Caller({"temperature": 1.0}, enc, None)   # a format-1 one
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    chosen, conf = caller(["A" * 30], None, logits)
    assert enc.classes[0][chosen[0, 0]] == "k__A"
    np.testing.assert_allclose(conf[0], [0.8, 0.5], rtol=1e-6)
    assert Mixture(**Mixture(0.3, 0.7, 0.0, 5, 0.02).to_dict()).kmer == 0.7


def test_ref_reads_counts_the_called_taxons_memory_rows():
    from q2_barcodemamba.core.abstention import (
        FORMAT3_FEATURES, FEATURES, rank_evidence, reference_classes)
    from q2_barcodemamba.core.memory import Neighbours
    from q2_barcodemamba.core.taxonomy import LabelEncoder
    lin = parse_taxonomy(list("abc"), ["k__A;g__X;s__x1", "k__A;g__X;s__x2",
                                       "k__A;g__Y;s__y1"])
    enc = LabelEncoder.fit(lin, 3)
    leaf = {lv: i for i, lv in enumerate(enc.leaves)}
    x1, x2 = leaf["k__A;g__X;s__x1"], leaf["k__A;g__X;s__x2"]
    # memory rows: x1 three times, x2 once, y1 none, one row unlabelled
    rows = [x1] * 3 + [x2, -1]
    mem = ReferenceMemory.build(torch.eye(5), np.array(rows),
                                ["ACGT" * 6] * 5)
    ref = reference_classes(enc.leaf_to_class, mem)
    assert ref.cls.shape == (3, 5) and (ref.cls[:, 4] == -1).all()
    cls = {c: i for i, c in enumerate(enc.classes[2])}
    chosen = np.array([[0, enc.classes[1].index("k__A;g__X"),
                        cls["k__A;g__X;s__x1"]],
                       [0, enc.classes[1].index("k__A;g__Y"),
                        cls["k__A;g__Y;s__y1"]],
                       [0, -1, -1]])
    nb = Neighbours(np.array([[0, 3]] * 3), np.array([[0.9, 0.5]] * 3),
                    np.zeros((3, 0), np.int64), np.zeros((3, 0)))
    mass = np.full((3, 3), 0.5)
    X = rank_evidence(FEATURES, chosen, mass, nb, ref, None, None)
    got = X[:, :, FEATURES.index("ref_reads")]
    np.testing.assert_allclose(got, np.log1p([[4, 4, 3], [4, 0, 0],
                                              [4, 0, 0]]))
    # a format-3 calibrator (three features) gets the evidence it had
    old = rank_evidence(FORMAT3_FEATURES, chosen, mass, nb, ref, None, None)
    np.testing.assert_array_equal(old, X[:, :, :3])
    assert FEATURES[:3] == FORMAT3_FEATURES


def test_calibrator_names_unknown_evidence():
    with pytest.raises(ValueError, match="newer q2-barcodemamba"):
        RankCalibrator(["mass", "future"], np.zeros(2), np.ones(2),
                       np.zeros((1, 2)), np.zeros(1))


def test_augmentation_is_seeded_and_keeps_min_length():
    rng = np.random.default_rng(4)
    reads = random_reads(rng, 20, 100) + ["ACGT" * 6]
    cfg = AugmentConfig(p=1.0, substitution=0.05, indel=0.05, crop=0.3,
                        min_length=20)
    a = augment_batch(reads, 7, cfg)
    assert a == augment_batch(reads, 7, cfg)
    assert a != augment_batch(reads, 8, cfg)
    assert sum(x != y for x, y in zip(a, reads)) >= 18
    assert min(len(x) for x in a) >= 20
    assert all(set(x) <= set("ACGT") for x in a)
    heavy = AugmentConfig(p=1.0, substitution=0.0, indel=0.5, crop=0.5,
                          min_length=30)
    r = np.random.default_rng(0)
    assert min(len(vary(reads[0], r, heavy)) for _ in range(50)) >= 30
    assert augment_batch(reads, 1, AugmentConfig(p=0.0)) == reads
    with pytest.raises(ValueError):
        AugmentConfig(p=2.0).validate()


def test_supervised_contrastive_pulls_same_taxon_together():
    g = torch.tensor([0, 0, 1, 1])
    together = torch.tensor([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    apart = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0.01], [0.01, 1.0]])
    lo = supervised_contrastive(together, [g], [1.0])
    hi = supervised_contrastive(apart, [g], [1.0])
    assert lo < hi
    none = supervised_contrastive(together, [torch.tensor([0, 1, 2, -1])],
                                  [1.0])
    assert float(none) == 0.0


def test_hold_out_genera_keeps_each_family_and_is_seeded():
    ids, _, tax = yeasts()
    lineages = parse_taxonomy(ids, [tax[i] for i in ids])
    train = np.arange(len(ids))
    tr, va = hold_out_genera(lineages, train, np.arange(0), 0.1, seed=0,
                             rank=5)
    assert len(tr) + len(va) == len(ids) and len(va) > 0
    assert not set(tr) & set(va)
    held_genera = {lineages[i][:6] for i in va}
    train_genera = {lineages[i][:6] for i in tr}
    assert not held_genera & train_genera           # whole genera
    train_families = {g[:5] for g in train_genera}
    assert all(g[:5] in train_families for g in held_genera)
    tr2, va2 = hold_out_genera(lineages, train, np.arange(0), 0.1, seed=0,
                               rank=5)
    assert np.array_equal(va, va2)


def test_kmer_postings_equal_a_stable_argsort():
    """The chunked counting sort of the k-mer index gives the posting
    lists of one stable argsort of all codes, for any chunk size."""
    from q2_barcodemamba.core.kmers import _postings
    rng = np.random.default_rng(3)
    ref = KmerSets(random_reads(rng, 120) + ["ACGT" * 3, ""], 10)
    index = KmerIndex(ref, max_df=1.0)
    rows = np.repeat(np.arange(len(ref), dtype=np.int32), ref.sizes)
    want = rows[np.argsort(ref.codes, kind="stable")]
    np.testing.assert_array_equal(index.postings, want)
    for chunk in (1, 50, 977, 1 << 30):
        np.testing.assert_array_equal(_postings(ref, index.ptr, chunk), want)
    empty = KmerSets(["AC"], 10)
    assert len(KmerIndex(empty).postings) == 0


def test_posting_cap_reads_the_module_constant(monkeypatch):
    """k-mers in more than MAX_POSTING reads are not searched; the cap is
    read when an index is built (a changed constant takes effect)."""
    from q2_barcodemamba.core import kmers
    rng = np.random.default_rng(4)
    reads = random_reads(rng, 60)
    ref = KmerSets([r + "ACGTTGCAAGGT" for r in reads], 10)  # shared k-mers
    assert KmerIndex(ref, max_df=1.0).searched.sum() > 0
    shared = np.bincount(ref.codes, minlength=4 ** 10) >= 60
    assert KmerIndex(ref, max_df=1.0).searched[shared].all()
    monkeypatch.setattr(kmers, "MAX_POSTING", 59)
    capped = KmerIndex(ref, max_df=1.0)
    assert shared.any() and not capped.searched[shared].any()
    assert capped.searched[~shared & (np.bincount(
        ref.codes, minlength=4 ** 10) > 0)].all()
