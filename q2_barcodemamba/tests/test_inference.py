import numpy as np
import pytest
import torch

from q2_barcodemamba.core.inference import (fit_temperature,
                                            hierarchical_walk,
                                            right_call_curve, truncate)
from q2_barcodemamba.core.taxonomy import (LabelEncoder, find_conflicts,
                                           parse_taxonomy)

LINEAGES = [
    "k__F;p__A;g__Candida;s__Candida_albicans",
    "k__F;p__A;g__Candida;s__Candida_tropicalis",
    "k__F;p__A;g__Pichia;s__Pichia_kudriavzevii",
    "k__F;p__B;g__Cryptococcus;s__unidentified",
]


def encoder():
    lin = parse_taxonomy([str(i) for i in range(4)], LINEAGES)
    return LabelEncoder.fit(lin, 4, ["kingdom", "phylum", "genus",
                                     "species"]), lin


def test_parse_taxonomy_truncates_unknown_and_rejects_ragged():
    lin = parse_taxonomy(["a", "b"], ["k__F; p__A ;g__X;s__", "k__F;p__A;"
                                      "g__unidentified;s__unidentified"])
    assert lin == [("k__F", "p__A", "g__X"), ("k__F", "p__A")]
    with pytest.raises(ValueError, match="'b' has 2 ranks.*'a' has 3"):
        parse_taxonomy(["a", "b"], ["k__F;p__A;g__X", "k__F;p__A"])


def test_label_encoder_classes_targets_and_leaf_map():
    enc, lin = encoder()
    assert enc.n_classes == [1, 2, 3, 3]
    assert len(enc.leaves) == 4  # the Cryptococcus record is a genus leaf
    y, leaf = enc.encode(lin)
    assert y[3].tolist()[3] == -1 and (y[:3] >= 0).all()
    assert sorted(leaf.tolist()) == [0, 1, 2, 3]
    # leaf -> class map agrees with the per-rank targets
    for i in range(4):
        assert enc.leaf_to_class[:, leaf[i]].tolist() == y[i].tolist()
    enc2 = LabelEncoder.from_dict(enc.to_dict())
    assert (enc2.leaf_to_class == enc.leaf_to_class).all()


def test_walk_sums_leaf_probabilities_and_stays_consistent():
    enc, lin = encoder()
    leaves = enc.leaves
    p = torch.zeros(1, 4)
    # albicans 0.35, tropicalis 0.3 -> genus Candida 0.65 beats Pichia 0.05,
    # but phylum B (Cryptococcus leaf) 0.3 vs A 0.7
    p[0, leaves.index(";".join(lin[0]))] = 0.35
    p[0, leaves.index(";".join(lin[1]))] = 0.30
    p[0, leaves.index(";".join(lin[2]))] = 0.05
    p[0, leaves.index(";".join(lin[3]))] = 0.30
    l2c = torch.as_tensor(enc.leaf_to_class)
    chosen, conf = hierarchical_walk(p, l2c, enc.n_classes)
    np.testing.assert_allclose(conf[0].numpy(), [1.0, 0.7, 0.65, 0.35],
                               rtol=1e-6)
    calls = truncate(chosen.numpy(), conf.numpy(), enc.classes, 0.6)
    assert calls == [("k__F;p__A;g__Candida", pytest.approx(0.65))]
    assert truncate(chosen.numpy(), conf.numpy(), enc.classes, None)[0][0] \
        == "k__F;p__A;g__Candida;s__Candida_albicans"
    assert truncate(chosen.numpy(), conf.numpy() * 0.1, enc.classes,
                    0.5)[0][0] == "Unassigned"


def test_walk_stops_where_no_reference_goes_deeper():
    enc, lin = encoder()
    p = torch.zeros(1, 4)
    p[0, enc.leaves.index(";".join(lin[3]))] = 1.0
    chosen, conf = hierarchical_walk(p, torch.as_tensor(enc.leaf_to_class),
                                     enc.n_classes)
    assert chosen[0, 3] == -1 and conf[0, 3] == 0
    assert truncate(chosen.numpy(), conf.numpy(), enc.classes, None)[0][0] \
        == "k__F;p__B;g__Cryptococcus"


def test_right_call_curve_counts_exact_depth_only():
    # two reads: one seen species (depth 3), one unseen species (depth 2)
    chosen = np.array([[0, 0, 0, 0], [0, 0, 0, 1]])
    conf = np.array([[1, .9, .8, .6], [1, .9, .8, .6]])
    y = np.array([[0, 0, 0, 0], [0, 0, 0, -1]])
    rates = right_call_curve(chosen, conf, y, [0.5, 0.7, 0.95])
    assert rates == [0.5, 0.5, 0.0]


def test_fit_temperature_recovers_sharpening():
    enc, lin = encoder()
    torch.manual_seed(0)
    y, leaf = enc.encode(lin)
    logits = torch.randn(2000, 4) * 2.0      # (n, n_leaf), calibrated at T=1
    drawn = torch.multinomial(torch.softmax(logits, 1), 1).squeeze(1)
    # column j of the logits is leaf j; the read's targets are that leaf's
    targets = enc.leaf_to_class.T[drawn.numpy()]
    t = fit_temperature(logits * 3, targets,
                        torch.as_tensor(enc.leaf_to_class), enc.n_classes)
    assert 2.4 < t < 3.6


def test_find_conflicts_names_genus_in_two_families():
    lin = parse_taxonomy(["a", "b"], ["k__F;f__X;g__G", "k__F;f__Y;g__G"])
    msgs = find_conflicts(lin)
    assert len(msgs) == 1 and "g__G under 2 parents" in msgs[0]


def test_multitask_loss_hls_penalises_distant_confusions_more():
    from q2_barcodemamba.core.config import TrainConfig
    from q2_barcodemamba.core.losses import MultiTaskLoss
    enc, lin = encoder()
    y_rank, y_leaf = enc.encode(lin)
    y = np.concatenate([y_rank, y_leaf[:, None]], 1)        # (4, R + 1)
    leaves = enc.leaves
    sibling = leaves.index(";".join(lin[1]))    # C. tropicalis
    distant = leaves.index(";".join(lin[3]))    # Cryptococcus (phylum B)
    target = torch.as_tensor(y[:1])             # C. albicans

    def leaf_loss(tc, favour):
        fn = MultiTaskLoss(tc, enc.classes, enc.leaf_to_class, y, "cpu")
        logits = [torch.zeros(1, n) for n in enc.n_classes]
        leaf = torch.zeros(1, len(leaves))
        leaf[0, favour] = 5.0
        return fn(logits + [leaf], target).item()

    hls = TrainConfig(hls_epsilon=0.05)
    flat = TrainConfig(hls_epsilon=0.0, label_smoothing=0.0)
    assert leaf_loss(hls, sibling) < leaf_loss(hls, distant) - 0.01
    assert leaf_loss(flat, sibling) == pytest.approx(leaf_loss(flat, distant))
    # inverse-sqrt class weights: the loss is a weighted mean, so it stays
    # finite and positive, and rare-class reads weigh more
    w = MultiTaskLoss(TrainConfig(class_weight_power=0.5), enc.classes,
                      enc.leaf_to_class, y, "cpu").weights
    assert all(torch.isfinite(t).all() and (t >= 0).all() for t in w)
    pairs = 0
    for h, weights in enumerate(w):
        n = np.bincount(y[:, h][y[:, h] >= 0], minlength=len(weights))
        for a in range(len(n)):
            for b in range(len(n)):
                if 0 < n[a] < n[b]:
                    assert weights[a] > weights[b], (h, a, b)
                    pairs += 1
    assert pairs >= 2    # phylum B (1 read) vs A (3); Pichia vs Candida


def test_unassigned_reports_one_minus_the_top_rank_confidence():
    """A read failing even the top rank is Unassigned with 1 - the
    confidence of its best top-rank taxon (classify-sklearn's contract:
    how sure we are that nothing can be called), not 0 or 1."""
    enc, lin = encoder()
    chosen = np.array([[0, 1, 2, 0], [0, 0, 0, 0]])
    conf = np.array([[0.4, 0.3, 0.2, 0.1], [0.9, 0.8, 0.7, 0.6]])
    calls = truncate(chosen, conf, enc.classes, 0.65)
    assert calls[0] == ("Unassigned", pytest.approx(0.6))
    assert calls[1] == (enc.classes[2][0], pytest.approx(0.7))
    # through the walk: two kingdoms of 0.45 / 0.55 at threshold 0.6
    lin2 = parse_taxonomy(["a", "b"], ["k__A;p__X", "k__B;p__Y"])
    enc2 = LabelEncoder.fit(lin2, 2)
    p = torch.tensor([[0.45, 0.55]])
    chosen, conf = hierarchical_walk(p, torch.as_tensor(enc2.leaf_to_class),
                                     enc2.n_classes)
    assert truncate(chosen.numpy(), conf.numpy(), enc2.classes, 0.6) == [
        ("Unassigned", pytest.approx(0.45))]


def test_known_in_scores_unseen_taxa_at_their_deepest_seen_rank():
    from q2_barcodemamba.core.validation import known_in
    ref = np.array([[0, 0, 0], [0, 1, 2], [1, 2, -1]])
    y = np.array([[0, 0, 0],      # all seen
                  [0, 0, 5],      # unseen species of a seen genus
                  [0, 3, 4],      # unseen genus: species unknown below it
                  [1, 2, -1],     # seen genus, species unknown in truth
                  [2, 0, 0],      # unseen kingdom: nothing known
                  [0, -1, 0]])    # unknown genus: nothing below it
    got = known_in(y, ref)
    assert got.tolist() == [[0, 0, 0], [0, 0, -1], [0, -1, -1],
                            [1, 2, -1], [-1, -1, -1], [0, -1, -1]]
    assert y[1, 2] == 5            # the input is not changed
    assert known_in(y[:0], ref).shape == (0, 3)
