"""Hierarchical label smoothing, class weights and soft cross-entropy.

The hand-made taxonomy (kingdom, phylum, genus, species)::

    k__F ─ p__A ─ g__X ─ s__1 (3 reads), s__2 (1 read)
               └─ g__Y ─ s__3 (2 reads)
         └ p__B ─ g__Z ─ s__4 (1 read),  s__5 (3 reads)

Rule checked (see ``q2_barcodemamba.core.losses``): at rank r the true class
keeps ``1 - sum_{l<r} eps_l``; each ``eps_l`` is spread over the classes of
rank r sharing the true class's ancestor at rank l *including the true class
itself*, in proportion to their reference counts. So the true class also
receives a share of every ``eps_l``, and the expected vectors below add it.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from q2_barcodemamba.core.losses import (
    HierarchicalSmoother, class_weights, hls_targets, soft_cross_entropy)
from q2_barcodemamba.core.taxonomy import LabelEncoder

EPS = 0.02
LINEAGES = (
    [("k__F", "p__A", "g__X", "s__1")] * 3
    + [("k__F", "p__A", "g__X", "s__2")] * 1
    + [("k__F", "p__A", "g__Y", "s__3")] * 2
    + [("k__F", "p__B", "g__Z", "s__4")] * 1
    + [("k__F", "p__B", "g__Z", "s__5")] * 3)


@pytest.fixture(scope="module")
def toy():
    enc = LabelEncoder.fit(LINEAGES, 4)
    y, _ = enc.encode(LINEAGES)
    return enc, y


def row(enc, y, species):
    """Target row (1, R) of the first read of a species."""
    i = [lin[3] for lin in LINEAGES].index(species)
    return torch.as_tensor(y[i:i + 1])


def test_toy_layout(toy):
    enc, _ = toy
    assert enc.classes[2] == ["k__F;p__A;g__X", "k__F;p__A;g__Y",
                              "k__F;p__B;g__Z"]
    assert [c[-4:] for c in enc.classes[3]] == [
        "s__1", "s__2", "s__3", "s__4", "s__5"]


@pytest.mark.parametrize("build", ["encoder", "targets"])
def test_hand_computed_genus_targets(toy, build):
    enc, y = toy
    sm = (HierarchicalSmoother.from_encoder(enc, y, EPS) if build == "encoder"
          else hls_targets(y, enc.n_classes, EPS))
    # genus counts X=4, Y=2, Z=4 (10 reads); phylum A holds X, Y (6 reads)
    # true X: keeps 0.96; kingdom eps over X,Y,Z by 4:2:4; phylum eps over X,Y
    # by 4:2 -> [0.981333, 0.010667, 0.008]
    want_x = [0.96 + EPS * 4 / 10 + EPS * 4 / 6,
              EPS * 2 / 10 + EPS * 2 / 6,
              EPS * 4 / 10]
    # true Z: phylum B holds only Z -> [0.008, 0.004, 0.988]
    want_z = [EPS * 4 / 10, EPS * 2 / 10, 0.96 + EPS * 4 / 10 + EPS]
    got = sm.targets(torch.cat([row(enc, y, "s__1"), row(enc, y, "s__5")]),
                     2, torch.float64)
    np.testing.assert_allclose(got.numpy(), [want_x, want_z], atol=1e-12)
    np.testing.assert_allclose(want_x, [0.9813333333, 0.0106666667, 0.008])


@pytest.mark.parametrize("build", ["encoder", "targets"])
def test_hand_computed_species_targets(toy, build):
    enc, y = toy
    sm = (HierarchicalSmoother.from_encoder(enc, y, EPS) if build == "encoder"
          else hls_targets(y, enc.n_classes, EPS))
    # species counts 3,1,2,1,3 (10); phylum A: s1,s2,s3 (6); genus X: s1,s2 (4)
    # true s__2 keeps 0.94 -> [0.031, 0.950333, 0.010667, 0.002, 0.006]
    want_s2 = [EPS * 3 / 10 + EPS * 3 / 6 + EPS * 3 / 4,
               0.94 + EPS * 1 / 10 + EPS * 1 / 6 + EPS * 1 / 4,
               EPS * 2 / 10 + EPS * 2 / 6,
               EPS * 1 / 10,
               EPS * 3 / 10]
    # true s__3 (alone in genus Y) -> [0.016, 0.005333, 0.964667, 0.002, 0.006]
    want_s3 = [EPS * 3 / 10 + EPS * 3 / 6,
               EPS * 1 / 10 + EPS * 1 / 6,
               0.94 + EPS * 2 / 10 + EPS * 2 / 6 + EPS,
               EPS * 1 / 10,
               EPS * 3 / 10]
    got = sm.targets(torch.cat([row(enc, y, "s__2"), row(enc, y, "s__3")]),
                     3, torch.float64)
    np.testing.assert_allclose(got.numpy(), [want_s2, want_s3], atol=1e-12)
    np.testing.assert_allclose(
        want_s2, [0.031, 0.9503333333, 0.0106666667, 0.002, 0.006])


def test_zero_count_classes_get_no_mass(toy):
    enc, _ = toy
    # s__4 absent from the reference counts: none of the mass of s__5's
    # genus or phylum goes to it. s__4 as true class with its whole genus at
    # count 0 keeps that level's eps itself, so targets still sum to 1.
    counts = [np.array([9]), np.array([6, 3]), np.array([4, 2, 3]),
              np.array([3, 1, 2, 0, 3])]
    sm = HierarchicalSmoother(enc.classes, counts, EPS)
    got = sm.targets(torch.tensor([4, 3]), 3, torch.float64).numpy()
    assert got[0, 3] == 0.0
    np.testing.assert_allclose(got[0, 4], 0.94 + EPS * 3 / 9 + EPS + EPS)
    counts[3] = np.array([3, 1, 2, 0, 0])
    sm = HierarchicalSmoother(enc.classes, counts, EPS)
    got = sm.targets(torch.tensor([3]), 3, torch.float64).numpy()[0]
    # kingdom level: spread over s1..s3 (6); phylum and genus B/Z empty -> kept
    np.testing.assert_allclose(
        got, [EPS * 3 / 6, EPS * 1 / 6, EPS * 2 / 6, 0.94 + 2 * EPS, 0.0],
        atol=1e-12)


def test_sums_unknown_rows_and_rank0(toy):
    enc, y = toy
    sm = hls_targets(y, enc.n_classes, EPS)
    assert sm[0] is None and sm.targets(torch.as_tensor(y), 0) is None
    assert len(sm) == 4 and all(s is not None for s in sm.ranks[1:])
    batch = torch.as_tensor(np.vstack([y, [[0, 1, -1, -1]]]))
    for r in range(4):
        t = sm.dense(batch, r, torch.float64)
        np.testing.assert_allclose(t[:-1].sum(1).numpy(), 1.0, atol=1e-12)
        assert (t >= 0).all()
        assert t.argmax(1)[:-1].tolist() == y[:, r].tolist()
        if r >= 2:
            assert (t[-1] == 0).all()
    one_hot = sm.dense(batch, 0)
    assert torch.equal(one_hot, torch.ones(len(batch), 1))
    # -1 rows are ignored by the loss
    logits = torch.randn(len(batch), enc.n_classes[3],
                         generator=torch.Generator().manual_seed(0))
    t = sm.targets(batch, 3)
    w = class_weights(y[:, 3], enc.n_classes[3])
    for weight in (None, w):
        assert torch.allclose(soft_cross_entropy(logits, t, weight),
                              soft_cross_entropy(logits[:-1], t[:-1], weight))
    # nothing to learn -> 0, not nan
    zero = soft_cross_entropy(logits[-1:], t[-1:], w)
    assert zero.item() == 0.0


def test_zero_eps_gives_no_smoothing(toy):
    enc, y = toy
    sm = hls_targets(y, enc.n_classes, 0.0)
    assert all(s is None for s in sm.ranks)
    sm = hls_targets(y, enc.n_classes, [0.0, 0.0, 0.05])
    assert [s is None for s in sm.ranks] == [True, True, True, False]
    with pytest.raises(ValueError):
        hls_targets(y, enc.n_classes, [0.5, 0.4, 0.3])
    with pytest.raises(ValueError):
        hls_targets(y, enc.n_classes, [0.1, 0.1])


def test_class_weights():
    y = np.array([0] * 9 + [1] * 4 + [3] * 1 + [-1] * 5)
    w = class_weights(y, 5).double()
    n = np.array([9, 4, 0, 1, 0])
    assert w[2] == 0 and w[4] == 0
    np.testing.assert_allclose((w[[0, 1, 3]] * np.sqrt([9, 4, 1])).numpy(),
                               float(w[3]), rtol=1e-6)
    np.testing.assert_allclose((n * w.numpy()).sum() / n.sum(), 1.0,
                               rtol=1e-6)
    np.testing.assert_allclose(class_weights(y, 5, power=0.0).numpy(),
                               [1, 1, 0, 1, 0])


def test_soft_ce_matches_torch_for_one_hot():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 7, generator=gen, dtype=torch.float64)
    hard = torch.randint(0, 7, (16,), generator=gen)
    one_hot = F.one_hot(hard, 7).double()
    weight = torch.rand(7, generator=gen, dtype=torch.float64) + 0.1
    for w in (None, weight):
        want = F.cross_entropy(logits, hard, weight=w)
        got = soft_cross_entropy(logits, one_hot, w)
        assert abs(got.item() - want.item()) < 1e-6
        got = soft_cross_entropy(logits, one_hot, w, hard=hard)
        assert abs(got.item() - want.item()) < 1e-6
    # gradient agrees too
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    soft_cross_entropy(a, one_hot, weight).backward()
    F.cross_entropy(b.float(), hard, weight=weight.float()).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def slow_targets(classes, counts, eps, r, c):
    """Per-read reference of the rule, straight from the prefix strings."""
    n = len(classes[r])
    t = np.zeros(n)
    if c < 0:
        return t
    t[c] = 1.0 - sum(eps[:r])
    for l in range(r):
        anc = ";".join(classes[r][c].split(";")[:l + 1])
        members = [k for k in range(n)
                   if ";".join(classes[r][k].split(";")[:l + 1]) == anc]
        total = sum(counts[r][k] for k in members)
        if total == 0:
            t[c] += eps[l]
            continue
        for k in members:
            t[k] += eps[l] * counts[r][k] / total
    return t


def random_lineages(rng, n_reads=200):
    """4-rank random tree; names repeat under different parents (homonyms)
    and ~15% of the reads stop early (unknown deeper ranks)."""
    out = []
    for _ in range(n_reads):
        lin = [f"k__{rng.integers(2)}"]
        for prefix, fan in (("p", 3), ("g", 3), ("s", 4)):
            lin.append(f"{prefix}__{rng.integers(fan)}")
        depth = 4 if rng.random() > 0.15 else int(rng.integers(1, 4))
        out.append(tuple(lin[:depth]))
    return out


def test_vectorised_equals_slow_reference():
    rng = np.random.default_rng(7)
    lineages = random_lineages(rng)
    enc = LabelEncoder.fit(lineages, 4)
    y, _ = enc.encode(lineages)
    assert (y == -1).any()
    eps = [0.01, 0.02, 0.03]
    counts = [np.bincount(y[:, r][y[:, r] >= 0], minlength=n)
              for r, n in enumerate(enc.n_classes)]
    sms = [HierarchicalSmoother(enc.classes, counts, eps),
           HierarchicalSmoother.from_encoder(enc, y, eps + [0.5]),
           hls_targets(y, enc.n_classes, eps)]
    yt = torch.as_tensor(y)
    for r in range(1, 4):
        want = np.stack([slow_targets(enc.classes, counts, eps, r, c)
                         for c in y[:, r]])
        for sm in sms:
            got = sm.targets(yt, r, torch.float64).numpy()
            np.testing.assert_allclose(got, want, atol=1e-12)
        got32 = sms[0].targets(yt[:, r], r)
        assert got32.dtype == torch.float32
        np.testing.assert_allclose(got32.numpy(), want, atol=1e-6)


def test_from_targets_rejects_inconsistent_hierarchy():
    y = np.array([[0, 0], [1, 0]])  # class 0 of rank 1 under two parents
    with pytest.raises(ValueError):
        hls_targets(y, [2, 1])


def test_unknown_labels_are_ignored_in_their_rank():
    """A read whose species is unidentified (-1) adds nothing to the species
    head's loss, but still counts at the ranks above."""
    from q2_barcodemamba.core.config import TrainConfig
    from q2_barcodemamba.core.taxonomy import LabelEncoder
    from q2_barcodemamba.core.train import MultiTaskLoss
    lin = [("k__F", "g__a", "s__a1"), ("k__F", "g__a", "s__a2"),
           ("k__F", "g__b", "s__b1"), ("k__F", "g__b")]
    lab = LabelEncoder.fit(lin, 3)
    yr, yl = lab.encode(lin)
    y = torch.as_tensor(np.concatenate([yr, yl[:, None]], 1))
    assert y[3, 2] == -1 and y[3, 1] >= 0
    for tc in (TrainConfig(label_smoothing=0.0),
               TrainConfig(hls_epsilon=0.02, class_weight_power=0.5)):
        loss = MultiTaskLoss(tc, lab.classes, lab.leaf_to_class,
                             y.numpy(), "cpu")
        torch.manual_seed(0)
        logits = [torch.randn(4, n) for n in
                  lab.n_classes + [len(lab.leaves)]]
        full = loss(logits, y)
        # changing the unknown read's species logits changes nothing
        logits2 = [lg.clone() for lg in logits]
        logits2[2][3, 0] += 5.0
        assert torch.allclose(loss(logits2, y), full)
        # but its genus logits matter
        logits3 = [lg.clone() for lg in logits]
        logits3[1][3, 0] += 5.0
        assert not torch.allclose(loss(logits3, y), full)
