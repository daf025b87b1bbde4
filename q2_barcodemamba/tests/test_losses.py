"""Hierarchical label smoothing, class weights, the per-head cross-entropy
and the multi-head training loss.

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

from q2_barcodemamba.core.config import TrainConfig
from q2_barcodemamba.core.losses import (
    MultiTaskLoss, class_weights, cross_entropy_terms, leaf_smoother,
    mean_over_heads, rank_smoothers)
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


def counts_of(enc, y):
    return [np.bincount(y[:, r][y[:, r] >= 0], minlength=n)
            for r, n in enumerate(enc.n_classes)]


def smoothers(enc, y, eps=EPS):
    """The rank smoothers training builds from reference targets y."""
    return rank_smoothers(enc.classes, counts_of(enc, y), eps)


def dense(sms, y, r, n_classes, dtype=torch.float32):
    """Soft targets (B, n) of rank r for a batch y (B, R): one-hot where
    the rank is not smoothed, all zeros for unknown (-1) targets."""
    col = y[:, r]
    if sms[r] is not None:
        return sms[r](col, dtype)
    out = torch.zeros(len(col), n_classes, dtype=dtype)
    ok = col >= 0
    out[ok.nonzero().squeeze(1), col[ok]] = 1
    return out


def ce(logits, soft, weight=None, target=None):
    """Weighted mean loss of one head from cross_entropy_terms."""
    if target is None:
        target = torch.where(soft.sum(1) > 0, soft.argmax(1),
                             torch.full((len(soft),), -1))
    num, den = cross_entropy_terms(logits, target, soft, weight)
    return num / den.clamp(min=1e-30)


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


def test_hand_computed_genus_targets(toy):
    enc, y = toy
    sm = smoothers(enc, y)
    # genus counts X=4, Y=2, Z=4 (10 reads); phylum A holds X, Y (6 reads)
    # true X: keeps 0.96; kingdom eps over X,Y,Z by 4:2:4; phylum eps over X,Y
    # by 4:2 -> [0.981333, 0.010667, 0.008]
    want_x = [0.96 + EPS * 4 / 10 + EPS * 4 / 6,
              EPS * 2 / 10 + EPS * 2 / 6,
              EPS * 4 / 10]
    # true Z: phylum B holds only Z -> [0.008, 0.004, 0.988]
    want_z = [EPS * 4 / 10, EPS * 2 / 10, 0.96 + EPS * 4 / 10 + EPS]
    got = sm[2](torch.cat([row(enc, y, "s__1"), row(enc, y, "s__5")])[:, 2],
                torch.float64)
    np.testing.assert_allclose(got.numpy(), [want_x, want_z], atol=1e-12)
    np.testing.assert_allclose(want_x, [0.9813333333, 0.0106666667, 0.008])


def test_hand_computed_species_targets(toy):
    enc, y = toy
    sm = smoothers(enc, y)
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
    got = sm[3](torch.cat([row(enc, y, "s__2"), row(enc, y, "s__3")])[:, 3],
                torch.float64)
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
    sm = rank_smoothers(enc.classes, counts, EPS)
    got = sm[3](torch.tensor([4, 3]), torch.float64).numpy()
    assert got[0, 3] == 0.0
    np.testing.assert_allclose(got[0, 4], 0.94 + EPS * 3 / 9 + EPS + EPS)
    counts[3] = np.array([3, 1, 2, 0, 0])
    sm = rank_smoothers(enc.classes, counts, EPS)
    got = sm[3](torch.tensor([3]), torch.float64).numpy()[0]
    # kingdom level: spread over s1..s3 (6); phylum and genus B/Z empty -> kept
    np.testing.assert_allclose(
        got, [EPS * 3 / 6, EPS * 1 / 6, EPS * 2 / 6, 0.94 + 2 * EPS, 0.0],
        atol=1e-12)


def test_sums_unknown_rows_and_rank0(toy):
    enc, y = toy
    sm = smoothers(enc, y)
    assert sm[0] is None        # rank 0 has no ancestor: one-hot
    assert len(sm) == 4 and all(s is not None for s in sm[1:])
    batch = torch.as_tensor(np.vstack([y, [[0, 1, -1, -1]]]))
    for r in range(4):
        t = dense(sm, batch, r, enc.n_classes[r], torch.float64)
        np.testing.assert_allclose(t[:-1].sum(1).numpy(), 1.0, atol=1e-12)
        assert (t >= 0).all()
        assert t.argmax(1)[:-1].tolist() == y[:, r].tolist()
        if r >= 2:
            assert (t[-1] == 0).all()
    # -1 rows are ignored by the loss
    logits = torch.randn(len(batch), enc.n_classes[3],
                         generator=torch.Generator().manual_seed(0))
    t = sm[3](batch[:, 3])
    w = class_weights(y[:, 3], enc.n_classes[3])
    for weight in (None, w):
        assert torch.allclose(ce(logits, t, weight),
                              ce(logits[:-1], t[:-1], weight))
    # nothing to learn: both sums 0 (the caller leaves the head out)
    num, den = cross_entropy_terms(logits[-1:], batch[-1:, 3], t[-1:], w)
    assert num.item() == 0.0 and den.item() == 0.0


def test_zero_eps_gives_no_smoothing(toy):
    enc, y = toy
    assert all(s is None for s in smoothers(enc, y, 0.0))
    assert [s is None for s in smoothers(enc, y, [0.0, 0.0, 0.05])] == [
        True, True, True, False]
    with pytest.raises(ValueError):
        smoothers(enc, y, [0.5, 0.4, 0.3])
    with pytest.raises(ValueError):
        smoothers(enc, y, [0.1, 0.1])
    assert leaf_smoother(enc.leaf_to_class, enc.n_classes,
                         np.ones(len(enc.leaves)), 0.0) is None


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


def test_cross_entropy_terms_match_torch():
    """Soft one-hot targets, hard targets and flat label smoothing give
    torch's (weighted) cross-entropy; unknown targets are left out."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 7, generator=gen, dtype=torch.float64)
    hard = torch.randint(0, 7, (16,), generator=gen)
    one_hot = F.one_hot(hard, 7).double()
    weight = torch.rand(7, generator=gen, dtype=torch.float64) + 0.1
    for w in (None, weight):
        want = F.cross_entropy(logits, hard, weight=w)
        for soft in (one_hot, None):
            num, den = cross_entropy_terms(logits, hard, soft,
                                           None if w is None else w.float())
            assert abs((num / den).item() - want.item()) < 1e-6
    want = F.cross_entropy(logits, hard, label_smoothing=0.1)
    num, den = cross_entropy_terms(logits, hard, label_smoothing=0.1)
    assert den.item() == 16 and abs((num / den).item() - want.item()) < 1e-6
    masked = hard.clone()
    masked[:4] = -1
    num, den = cross_entropy_terms(logits, masked)
    assert den.item() == 12
    assert abs((num / den).item()
               - F.cross_entropy(logits[4:], hard[4:]).item()) < 1e-6
    # gradient agrees too
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    num, den = cross_entropy_terms(a, hard, one_hot, weight.float())
    (num / den).backward()
    F.cross_entropy(b.float(), hard, weight=weight.float()).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_mean_over_heads_leaves_out_heads_without_targets():
    nums = [torch.tensor(6.0), torch.tensor(0.0), torch.tensor(3.0)]
    dens = [torch.tensor(3.0), torch.tensor(0.0), torch.tensor(1.0)]
    assert mean_over_heads(nums, dens).item() == pytest.approx((2 + 3) / 2)
    assert mean_over_heads(nums[1:2], dens[1:2]).item() == 0.0


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
    counts = counts_of(enc, y)
    # eps per ancestor level, or per rank (the deepest one unused)
    sms = [rank_smoothers(enc.classes, counts, eps),
           rank_smoothers(enc.classes, counts, eps + [0.5])]
    yt = torch.as_tensor(y)
    for r in range(1, 4):
        want = np.stack([slow_targets(enc.classes, counts, eps, r, c)
                         for c in y[:, r]])
        for sm in sms:
            got = sm[r](yt[:, r], torch.float64).numpy()
            np.testing.assert_allclose(got, want, atol=1e-12)
        got32 = sms[0][r](yt[:, r])
        assert got32.dtype == torch.float32
        np.testing.assert_allclose(got32.numpy(), want, atol=1e-6)


def test_rank_smoothers_reject_classes_that_are_not_prefixes(toy):
    enc, y = toy
    classes = [enc.classes[0], [c.split(";")[-1] for c in enc.classes[1]]]
    with pytest.raises(ValueError, match="rank 1 must be lineage prefixes"):
        rank_smoothers(classes, counts_of(enc, y)[:2], EPS)


def test_leaf_smoother_follows_the_lineages(toy):
    """The toy's leaves are its species: the leaf head's targets are the
    species head's; a leaf that ends above a rank is a group of its own."""
    enc, y = toy
    _, leaf = enc.encode(LINEAGES)
    counts = np.bincount(leaf, minlength=len(enc.leaves))
    sm = leaf_smoother(enc.leaf_to_class, enc.n_classes, counts, EPS)
    assert enc.leaves == enc.classes[3]
    t = torch.as_tensor(leaf)
    np.testing.assert_allclose(sm(t, torch.float64).numpy(),
                               smoothers(enc, y)[3](t, torch.float64).numpy(),
                               atol=1e-12)
    lins = LINEAGES + [("k__F", "p__B")]          # a leaf at phylum depth
    enc2 = LabelEncoder.fit(lins, 4)
    _, leaf2 = enc2.encode(lins)
    sm2 = leaf_smoother(enc2.leaf_to_class, enc2.n_classes,
                        np.bincount(leaf2), EPS)
    short = enc2.leaves.index("k__F;p__B")
    got = sm2(torch.tensor([short]), torch.float64).numpy()[0]
    # kingdom eps spread by counts over all 6 leaves (11 reads); the phylum
    # B group holds s__4, s__5 and the short leaf; its genus is its own
    n = np.bincount(leaf2)
    want = EPS * n / n.sum()
    in_b = [enc2.leaves.index(";".join(lin)) for lin in
            (LINEAGES[6], LINEAGES[7], ("k__F", "p__B"))]
    want[in_b] += EPS * n[in_b] / n[in_b].sum()
    want[short] += 1 - 3 * EPS + EPS
    np.testing.assert_allclose(got, want, atol=1e-12)


def random_tree_loss(tc):
    rng = np.random.default_rng(3)
    lineages = random_lineages(rng)
    enc = LabelEncoder.fit(lineages, 4)
    yr, yl = enc.encode(lineages)
    y = np.concatenate([yr, yl[:, None]], 1)
    return enc, y, MultiTaskLoss(tc, enc.classes, enc.leaf_to_class, y,
                                 "cpu")


def test_hierarchical_smoothing_leaves_rank_0_one_hot():
    """With hls_epsilon > 0 no head gets flat smoothing: rank 0 (no
    ancestor) learns the one-hot target; without HLS every head gets the
    flat label_smoothing."""
    for hls in (0.02, 0.0):
        enc, y, loss = random_tree_loss(TrainConfig(
            hls_epsilon=hls, label_smoothing=0.1))
        assert enc.n_classes[0] == 2
        logits = torch.randn(len(y), 2,
                             generator=torch.Generator().manual_seed(0))
        t = torch.as_tensor(y[:, 0])
        num, den = loss.terms([logits], t[:, None])
        want = F.cross_entropy(logits, t,
                               label_smoothing=0.0 if hls else 0.1)
        assert (num[0] / den[0]).item() == pytest.approx(want.item(),
                                                         rel=1e-6)
        assert (loss.smoothers[0] is None
                and all((s is not None) == (hls > 0)
                        for s in loss.smoothers[1:]))


def test_unknown_labels_are_ignored_in_their_rank():
    """A read whose species is unidentified (-1) adds nothing to the species
    head's loss, but still counts at the ranks above."""
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
