"""The top-k lineage walk (core/walk.py) gives the full walk's calls and
confidences, and the chunked validation the unchunked one's."""
import numpy as np
import pytest
import torch

from q2_barcodemamba.core.abstention import (Mixture, default_grid,
                                             fit_abstention)
from q2_barcodemamba.core.inference import (HeadLogits, LeafProbs,
                                            fit_temperature)
from q2_barcodemamba.core.memory import Neighbours, ReferenceMemory
from q2_barcodemamba.core.taxonomy import LabelEncoder
from q2_barcodemamba.core.walk import LeafTree


def summed_walk(p: torch.Tensor, l2c: torch.Tensor, n_classes):
    """The walk by definition: at every rank sum every leaf below the
    chosen taxon into its child (O(n_leaf) per rank; the 0.3.0 code)."""
    B, R = p.shape[0], l2c.shape[0]
    p = p.double()
    mask = torch.ones_like(p, dtype=torch.bool)
    chosen = torch.full((B, R), -1, dtype=torch.long)
    conf = torch.zeros((B, R), dtype=torch.float64)
    for r in range(R):
        valid = l2c[r] >= 0
        mass = torch.zeros((B, n_classes[r]), dtype=torch.float64)
        mass.index_add_(1, l2c[r][valid], (p * mask)[:, valid])
        best_p, best_c = mass.max(1)
        alive = best_p > 0
        chosen[:, r] = torch.where(alive, best_c, torch.full_like(best_c, -1))
        conf[:, r] = torch.where(alive, best_p, torch.zeros_like(best_p))
        mask &= l2c[r][None, :] == chosen[:, r:r + 1]
    return chosen, conf


def random_encoder(n: int, seed: int = 0, shuffled: bool = False
                   ) -> LabelEncoder:
    """A random 6-rank taxonomy of about ``n`` lineages, a fifth of them
    ending above species (genus-level records); ``shuffled``: its leaves
    listed in a random order (as an encoder not fitted by
    ``LabelEncoder.fit`` may list them), not in tree order."""
    rng = np.random.default_rng(seed)
    lins = set()
    for _ in range(n):
        lin = [f"k__{rng.integers(2)}"]
        for r, b in zip(range(1, 6), (4, 4, 4, 4, 30)):
            lin.append(f"{lin[-1]}_{rng.integers(b)}")
        depth = int(rng.integers(3, 6)) if rng.random() < 0.2 else 6
        lins.add(tuple(lin[:depth]))
    enc = LabelEncoder.fit(sorted(lins), 6)
    if shuffled:
        leaves = list(np.random.default_rng(seed + 1)
                      .permutation(enc.leaves))
        enc = LabelEncoder(enc.rank_names, enc.classes, leaves)
    return enc


def negligible(chosen, conf):
    """Masses below float64 resolution of a row's total count as none."""
    chosen, conf = chosen.clone(), conf.clone()
    tiny = conf <= 1e-12
    chosen[tiny], conf[tiny] = -1, 0.0
    return chosen, conf


@pytest.mark.parametrize("scale,shuffled", [
    (0.3, False), (1.0, False), (3.0, False), (10.0, False), (30.0, False),
    (0.3, True), (10.0, True)])
def test_topk_walk_is_the_summed_walk(scale, shuffled):
    enc = random_encoder(3000, shuffled=shuffled)
    tree = LeafTree(enc.leaf_to_class, enc.n_classes)
    assert tree.identity is not shuffled     # the gather is skipped or not
    assert len(enc.leaves) > 2 * 64          # the top-k path is taken
    torch.manual_seed(int(scale * 10))
    p = torch.softmax(torch.randn(400, len(enc.leaves)) * scale, 1)
    want = negligible(*summed_walk(p, torch.as_tensor(enc.leaf_to_class),
                                   enc.n_classes))
    got = negligible(*tree.walk(p))
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], atol=1e-9, rtol=0)
    full = negligible(*tree.walk_full(p))
    assert torch.equal(full[0], want[0])
    if scale >= 3:      # peaked rows are proven on their top leaves
        assert tree.n_full < 0.15 * len(p)
    if scale <= 0.3:    # flat rows need the full walk, and get it
        assert tree.n_full > 0.5 * len(p)


def test_topk_walk_on_sparse_rows_and_genus_leaves():
    enc = random_encoder(3000, seed=1)
    tree = LeafTree(enc.leaf_to_class, enc.n_classes)
    torch.manual_seed(0)
    p = torch.zeros(60, len(enc.leaves))
    p.scatter_(1, torch.randint(0, len(enc.leaves), (60, 3)),
               torch.rand(60, 3))
    genus_leaves = np.flatnonzero(enc.leaf_to_class[-1] < 0)
    p[:20] = 0
    p[torch.arange(20), torch.as_tensor(genus_leaves[:20])] = 1.0
    want = summed_walk(p, torch.as_tensor(enc.leaf_to_class), enc.n_classes)
    got = tree.walk(p)
    assert torch.equal(got[0], want[0])
    assert (got[0][:20, -1] == -1).all()      # nothing deeper than a genus
    torch.testing.assert_close(got[1], want[1], atol=1e-9, rtol=0)


def test_fit_lists_leaves_in_tree_order():
    """LabelEncoder.fit sorts leaves by their label tuples, the walk's tree
    order, also where a label is a sibling's prefix followed by a
    character that sorts below ';' (joined strings would interleave)."""
    lins = [("k__F", "p__A", "c__x"), ("k__F", "p__A-1", "c__y"),
            ("k__F", "p__A"), ("k__F", "p__A 2", "c__z"),
            ("k__F1", "p__B", "c__w"), ("k__F", "p__A", "c__v"),
            ("k__F.", "p__C")]
    enc = LabelEncoder.fit(lins, 3)
    assert sorted(";".join(x) for x in lins) != enc.leaves
    tree = LeafTree(enc.leaf_to_class, enc.n_classes)
    assert tree.identity
    assert enc.leaves[:3] == ["k__F;p__A", "k__F;p__A;c__v",
                              "k__F;p__A;c__x"]


@pytest.mark.parametrize("shuffled", [False, True])
def test_leaf_tree_ranges_and_chosen_mass(shuffled):
    enc = random_encoder(500, shuffled=shuffled)
    tree = LeafTree(enc.leaf_to_class, enc.n_classes)
    pos = torch.empty(len(enc.leaves), dtype=torch.long)
    pos[tree.order] = torch.arange(len(enc.leaves))
    for r in range(len(enc.n_classes)):
        for c in range(enc.n_classes[r]):
            leaves = np.flatnonzero(enc.leaf_to_class[r] == c)
            got = sorted(pos[leaves].tolist())
            assert got == list(range(int(tree.start[r][c]),
                                     int(tree.end[r][c])))
    p = torch.softmax(torch.randn(5, len(enc.leaves)), 1)
    chosen, conf = tree.walk_full(p)
    np.testing.assert_allclose(tree.chosen_mass(p, chosen.numpy()),
                               conf.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="not a tree"):
        bad = enc.leaf_to_class.copy()
        bad[1, :] = np.arange(bad.shape[1]) % 2   # rank-1 classes interleave
        LeafTree(bad, [enc.n_classes[0], 2] + enc.n_classes[2:])


def random_neighbours(rng, n: int, n_leaf: int, D: int):
    """A memory of 300 random reads of random lineages and random
    neighbours (20 by k-mers, 8 by embedding, sorted similarities) of
    ``n`` queries in it."""
    seqs = ["".join(rng.choice(list("ACGT"), 80)) for _ in range(300)]
    memory = ReferenceMemory.build(torch.randn(300, D),
                                   rng.integers(0, n_leaf, 300), seqs)
    nb = Neighbours(rng.integers(0, 300, (n, 20)),
                    np.sort(rng.random((n, 20)))[:, ::-1].copy(),
                    rng.integers(0, 300, (n, 8)),
                    np.sort(rng.random((n, 8)))[:, ::-1].copy())
    return memory, nb


def test_chunked_validation_equals_whole_matrices():
    """fit_temperature and fit_abstention from a chunked HeadLogits (what
    fitting uses, no (n, n_leaf) matrix) equal the results from whole
    tensors."""
    enc = random_encoder(1500, seed=2)
    n_leaf, n, D = len(enc.leaves), 1300, 16
    torch.manual_seed(0)
    head = torch.nn.Linear(D, n_leaf)
    z = torch.randn(n, D) * 3
    with torch.no_grad():
        logits = head(z)
    rng = np.random.default_rng(0)
    leaf = rng.integers(0, n_leaf, n)
    y = enc.leaf_to_class.T[leaf].copy()
    y[rng.random(n) < 0.3, -1] = -1             # unseen species
    l2c = torch.as_tensor(enc.leaf_to_class)
    t_whole = fit_temperature(logits, y, l2c, enc.n_classes)
    t_chunk = fit_temperature(HeadLogits(z, head), y, enc.leaf_to_class,
                              enc.n_classes)
    assert t_whole == t_chunk
    memory, nb = random_neighbours(rng, n, n_leaf, D)
    groups = [str(g) for g in leaf]
    grid = default_grid(True, True)[:6] + [Mixture()]
    whole = fit_abstention(torch.softmax(logits / t_whole, 1), nb, memory,
                           enc, y, groups, grid)
    chunk = fit_abstention(LeafProbs(HeadLogits(z, head), t_chunk), nb,
                           memory, enc, y, groups, grid)
    assert whole["mixture"] == chunk["mixture"]
    np.testing.assert_allclose(whole["right_call_rate"],
                               chunk["right_call_rate"], atol=1e-12)
    # names compared exactly, numbers (nested lists) within approx's
    # defaults: pytest >= 8 refuses approx of a dict holding lists
    cal_w, cal_c = whole["calibrator"], chunk["calibrator"]
    assert cal_w.keys() == cal_c.keys()
    assert cal_w["features"] == cal_c["features"]
    for key in cal_w.keys() - {"features"}:
        np.testing.assert_allclose(np.asarray(cal_w[key], dtype=float),
                                   np.asarray(cal_c[key], dtype=float),
                                   rtol=1e-6, atol=1e-12, err_msg=key)


def test_auto_abstention_is_the_better_of_learned_and_summed():
    """learned="auto" returns what the better of the calibrator and the
    summed probability returns alone (mixture, threshold, calibrator or
    none), scored on the same validation reads."""
    enc = random_encoder(800, seed=4)
    n_leaf, n, D = len(enc.leaves), 600, 16
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    leaf = rng.integers(0, n_leaf, n)
    y = enc.leaf_to_class.T[leaf].copy()
    y[rng.random(n) < 0.3, -1] = -1             # unseen species
    # network probabilities that point at the right leaf for some reads
    logits = torch.randn(n, n_leaf)
    logits[torch.arange(n), torch.as_tensor(leaf)] += \
        torch.as_tensor(rng.random(n) * 8, dtype=torch.float32)
    p = torch.softmax(logits, 1)
    memory, nb = random_neighbours(rng, n, n_leaf, D)
    groups = [str(g) for g in leaf]
    grid = default_grid(True, True)[:4] + [Mixture()]
    res = {k: fit_abstention(p, nb, memory, enc, y, groups, grid, learned=k)
           for k in (True, False, "auto")}
    auto = res["auto"]
    assert auto["scores"] == pytest.approx(
        {"learned": res[True]["score"], "summed": res[False]["score"]})
    win = True if res[True]["score"] >= res[False]["score"] - 1e-9 else False
    assert auto["abstention"] == ("learned" if win else "summed")
    for key in ("mixture", "best_confidence", "score", "features"):
        assert auto[key] == res[win][key]
    assert (auto["calibrator"] is None) is (not win)
    with pytest.raises(ValueError, match="learned must be"):
        fit_abstention(p, nb, memory, enc, y, groups, grid, learned="yes")


def test_prefetch_and_bf16_paths_on_cpu():
    """The GPU path's two switches, run on a CPU: preparing the next chunk
    in a background thread changes nothing (same calls, same order, same
    errors), and bfloat16 autocast of the network keeps nearly all calls."""
    from q2_barcodemamba.tests.helpers import small_reference, tiny_classifier
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    recs = list(zip(ids, seqs))

    def run(**kw):
        return list(clf.predict(recs, chunk_size=37, progress=lambda m: None,
                                **kw))
    plain = run(prefetch=False)
    assert run(prefetch=True) == plain
    bad = recs[:50] + [("bad-read", "ACGTXXACGT" * 10)] + recs[50:]
    for prefetch in (False, True):
        with pytest.raises(ValueError, match="bad-read"):
            list(clf.predict(bad, chunk_size=37, prefetch=prefetch,
                             progress=lambda m: None))
    bf16 = run(precision="bf16")
    same = np.mean([a[1] == b[1] for a, b in zip(plain, bf16)])
    assert [a[0] for a in bf16] == [a[0] for a in plain]
    assert same >= 0.95, same
    with pytest.raises(ValueError, match="precision"):
        run(precision="fp16")


def test_fit_never_holds_reads_by_lineages_and_caps_scored_rows(
        monkeypatch):
    """Fitting asks for embeddings only (never an (n, n_leaf) logit
    matrix: 7 GiB for UNITE's ITS2 set, 700 GiB at 10x) and scores epochs
    and calibrates on at most scored_rows(lineages) validation rows."""
    from q2_barcodemamba.core import classifier as C
    from q2_barcodemamba.core.config import TrainConfig
    from q2_barcodemamba.tests.helpers import small_reference
    asked = []
    embed = C.TaxonomicClassifier._embed_all

    def spy(self, tokens, logits=True):
        asked.append(logits)
        return embed(self, tokens, logits)
    monkeypatch.setattr(C.TaxonomicClassifier, "_embed_all", spy)
    from q2_barcodemamba.core import validation as V
    monkeypatch.setattr(V, "MAX_SCORED", 40)
    monkeypatch.setattr(V, "MIN_SCORED", 10)
    ids, seqs, tax = small_reference()
    msgs = []
    clf = C.TaxonomicClassifier("tiny", train_config=TrainConfig(
        epochs=1, vocab_size=256, random_seed=0, n_threads=2)).fit(
        ids, seqs, tax, progress=msgs.append)
    assert asked and not any(asked)
    capped = [m for m in msgs if m.startswith("validation: scoring")]
    assert capped and "on 40 of the" in capped[0]
    assert clf.summary["n_validation"] > 40
    assert 0 < clf.calibration["score"] <= 1
    calls = list(clf.predict(zip(ids[:30], seqs[:30]),
                             progress=lambda m: None))
    assert sum(c[1] != "Unassigned" for c in calls) >= 20


def test_scored_rows_shrink_with_lineages():
    """16,384 scored rows up to 65,536 lineages (every shared reference),
    then rows x lineages <= 2^30, never under MIN_SCORED."""
    from q2_barcodemamba.core.validation import (MIN_SCORED, MAX_SCORED,
                                                 scored_rows)
    assert scored_rows(10) == scored_rows(41_712) == MAX_SCORED == 16384
    assert scored_rows(65_536) == 16384
    assert scored_rows(417_120) == 2574
    assert scored_rows(417_120) * 417_120 <= 2**30
    assert scored_rows(10**7) == MIN_SCORED
    assert scored_rows(0) == MAX_SCORED


def test_bf16_training_on_cpu():
    """fit with precision='bf16' (the GPU setting, run on a CPU): the
    forward passes run under bfloat16 autocast, the classifier it saves is
    float32, it learns (loss falls, genus calls right on its reference)
    and it calls nearly as the float32 fit does."""
    from q2_barcodemamba.core.classifier import TaxonomicClassifier
    from q2_barcodemamba.core.config import TrainConfig
    from q2_barcodemamba.tests.helpers import small_reference, tiny_classifier
    ids, seqs, tax = small_reference()
    msgs = []
    bf = TaxonomicClassifier("tiny", train_config=TrainConfig(
        epochs=2, batch_size=32, vocab_size=256, random_seed=1, n_threads=2,
        precision="bf16")).fit(ids, seqs, tax, progress=msgs.append)
    assert any("bfloat16 autocast" in m for m in msgs)
    assert {p.dtype for p in bf.net.parameters()} == {torch.float32}
    h = bf.summary["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    fp = tiny_classifier()
    recs = list(zip(ids, seqs))

    def genus(clf):
        return [t.split(";")[5] if t.count(";") >= 5 else None
                for _, t, _ in clf.predict(recs, confidence=None,
                                           progress=lambda m: None)]
    g_bf, g_fp = genus(bf), genus(fp)
    truth = [tax[i].split(";")[5] for i in ids]
    right_bf = np.mean([a == b for a, b in zip(g_bf, truth)])
    right_fp = np.mean([a == b for a, b in zip(g_fp, truth)])
    assert right_bf >= 0.6 and right_bf >= right_fp - 0.1, (right_bf,
                                                             right_fp)
    assert np.mean([a == b for a, b in zip(g_bf, g_fp)]) >= 0.8
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16").validate()


def test_chunks_are_sized_by_rows_times_lineages(monkeypatch):
    """Score chunks hold at most CHUNK_ELEMENTS values, whatever the
    number of lineages (512 rows x 417,120 lineages of float64 sums was
    1.7 GiB a copy, 20 GiB in all, on a synthetic 10x UNITE fit)."""
    from q2_barcodemamba.core import inference as I
    assert I.chunk_rows(6893) == I.CHUNK
    assert I.chunk_rows(417120) * 417120 <= I.CHUNK_ELEMENTS
    assert I.chunk_rows(10 ** 9) == 1
    monkeypatch.setattr(I, "CHUNK_ELEMENTS", 1000)
    head = torch.nn.Linear(4, 100)
    z = torch.randn(37, 4)
    for source in (I.HeadLogits(z, head), head(z).detach(),
                   I.LeafProbs(I.HeadLogits(z, head))):
        sl = [s for s, rows in I.chunks_of(source)]
        assert [s.stop - s.start for s in sl[:-1]] == [10] * 3
        assert sl[-1] == slice(30, 40)
        whole = torch.cat([rows for _, rows in I.chunks_of(source)])
        assert whole.shape == (37, 100)
