"""The classify-time caller: softmax, votes, walk and calibrator in
blocks of rows, and over a shortlist of lineages per read
(core/shortlist.py), the path of references with shortlist.MIN_LEAVES
lineages and more."""
import numpy as np
import torch

from q2_barcodemamba.core import shortlist
from q2_barcodemamba.core.abstention import (Caller, default_grid,
                                             fit_abstention)
from q2_barcodemamba.core.inference import HeadLogits
from q2_barcodemamba.core.memory import ReferenceMemory
from q2_barcodemamba.tests.test_walk import random_encoder


def caller_setting(seed: int = 3):
    """A random taxonomy, leaf head, reference memory of 400 reads, 300
    queries (cut from its first reads) with embeddings, and a calibration
    fitted on them: (encoder, memory, queries, z, head, calibration)."""
    enc = random_encoder(1500, seed=seed)
    n_leaf, n, D = len(enc.leaves), 300, 16
    torch.manual_seed(1)
    head = torch.nn.Linear(D, n_leaf)
    z = torch.randn(n, D) * 3
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGT"), 90)) for _ in range(400)]
    memory = ReferenceMemory.build(torch.randn(400, D),
                                   rng.integers(0, n_leaf, 400), seqs)
    queries = [s[5:85] for s in seqs[:n]]
    leaf = memory.leaf.numpy()[:n]
    y = enc.leaf_to_class.T[leaf].copy()
    with torch.no_grad():
        logits = head(z)
    nb = memory.neighbours(queries, z)
    cal = fit_abstention(torch.softmax(logits, 1), nb, memory, enc, y,
                         [str(g) for g in leaf], default_grid(True, True)[:5])
    return enc, memory, queries, z, head, cal


def test_caller_in_row_blocks_equals_one_block(monkeypatch):
    """Classify's caller runs softmax, mixture, walk and calibrator in
    blocks of rows (walk_rows) and the leaf head chunk by chunk: the same
    calls and confidences as one block and a logits matrix; the k-mer
    candidate search likewise in blocks of any size."""
    from q2_barcodemamba.core import abstention
    from q2_barcodemamba.core.abstention import Caller
    from q2_barcodemamba.core.kmers import KmerSets
    enc, memory, queries, z, head, cal = caller_setting()
    n_leaf, n = len(enc.leaves), len(queries)
    with torch.no_grad():
        logits = head(z)
    cal["temperature"] = 1.5
    caller = Caller(cal, enc, memory)
    assert caller.calibrator is not None
    monkeypatch.setattr(abstention, "WALK_ELEMENTS", 1 << 30)
    want = caller(queries, z, logits)
    assert abstention.walk_rows(n_leaf) >= n
    monkeypatch.setattr(abstention, "WALK_ELEMENTS", 7 * n_leaf)
    assert abstention.walk_rows(n_leaf) == 7
    for got in (caller(queries, z, logits),
                caller(queries, z, HeadLogits(z, head))):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-7)
    index, q = memory.index, KmerSets(queries, 10)
    sets = [np.sort(index.candidates(q, 20, block=b), 1) for b in (1, 5, 64)]
    np.testing.assert_array_equal(sets[0], sets[1])
    np.testing.assert_array_equal(sets[0], sets[2])


def setting(seed=3):
    """test_walk's caller setting with a genus head."""
    enc, memory, queries, z, head, cal = caller_setting(seed)
    torch.manual_seed(2)
    genus = torch.nn.Linear(z.shape[1], enc.n_classes[len(enc.rank_names)
                                                       - 2])
    cal["temperature"] = 1.5
    return enc, memory, queries, z, head, genus, cal


def test_a_shortlist_of_every_genus_is_the_full_caller(monkeypatch):
    enc, memory, queries, z, head, genus, cal = setting()
    for mix in ({"net": 0.6, "kmer": 0.4, "emb": 0.0, "k": 5, "tau": 0.05},
                {"net": 0.3, "kmer": 0.5, "emb": 0.2, "k": 3, "tau": 0.02},
                {"net": 1.0, "kmer": 0.0, "emb": 0.0, "k": 1, "tau": 0.02}):
        c = dict(cal, mixture=mix)
        want = Caller(c, enc, memory)(queries, z, HeadLogits(z, head))
        monkeypatch.setattr(shortlist, "MIN_LEAVES", 1)
        monkeypatch.setattr(shortlist, "GENERA", 10 ** 6)
        monkeypatch.setattr(shortlist, "BUDGET", 10 ** 6)
        caller = Caller(c, enc, memory)
        assert caller.shortlist is not None
        # without the genus head the caller computes every lineage
        np.testing.assert_array_equal(
            caller(queries, z, HeadLogits(z, head))[0], want[0])
        got = caller(queries, z, HeadLogits(z, head, parent=genus))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-6)
        monkeypatch.undo()


def test_the_shortlist_keeps_the_voters_and_stays_within_its_budget(
        monkeypatch):
    enc, memory, queries, z, head, genus, cal = setting(seed=4)
    monkeypatch.setattr(shortlist, "MIN_LEAVES", 1)
    monkeypatch.setattr(shortlist, "GENERA", 3)
    caller = Caller(dict(cal, mixture={"net": 0.5, "kmer": 0.5, "emb": 0.0,
                                       "k": 5, "tau": 0.05}), enc, memory)
    nb = caller.neighbours(queries[:40], z[:40])
    voters = shortlist._voters(caller, nb, 40)
    rows, pos, _ = caller.shortlist.positions(genus(z[:40]).detach(), voters)
    sl = caller.shortlist
    g = enc.leaf_to_class[sl.g]
    for b in range(40):
        mine = set(pos[rows == b].tolist())
        vote = set(voters[b][voters[b] >= 0].tolist())
        assert vote <= mine
        # whole genera: at most 3 (beyond them, the voters' own lineages)
        assert len({int(g[p]) for p in mine - vote if g[p] >= 0}) <= 3
        assert np.all(np.diff(pos[rows == b]) > 0)        # sorted, once
    # calls are lineages of the shortlist; confidences are probabilities
    ch, conf = caller(queries[:40], z[:40], HeadLogits(z[:40], head,
                                                       parent=genus))
    assert ((conf >= 0) & (conf <= 1)).all()
    assert (ch[:, 0] >= 0).all()
    monkeypatch.setattr(shortlist, "BUDGET", 1)
    rows, pos, _ = caller.shortlist.positions(genus(z[:40]).detach(), voters)
    for b in range(40):     # the voters' genera (or the first genus) only
        vote = set(voters[b][voters[b] >= 0].tolist())
        gen = {int(g[p]) for p in set(pos[rows == b].tolist()) - vote
               if g[p] >= 0}
        assert len(gen) <= 1


def test_classify_through_the_shortlist_equals_classify(monkeypatch):
    """predict and predict_ranks of a fitted classifier take the
    shortlist (the genus head comes with the leaf head) and, with every
    genus kept, call as without it; with two genera per read the calls
    are still lineages of the reference with confidences in [0, 1]."""
    from q2_barcodemamba.tests.helpers import small_reference, tiny_classifier
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    reads = list(zip(ids[:60], seqs[:60]))

    def run():
        return (list(clf.predict(reads, progress=lambda m: None)),
                clf.predict_ranks(seqs[:60]))
    want, (want_ch, want_cf) = run()
    assert clf._caller().shortlist is None
    monkeypatch.setattr(shortlist, "MIN_LEAVES", 1)
    monkeypatch.setattr(shortlist, "GENERA", 10 ** 6)
    monkeypatch.setattr(shortlist, "BUDGET", 10 ** 6)
    assert clf._caller().shortlist is not None
    assert clf._head_logits(torch.zeros(1, 4), False).parent is not None
    got, (ch, cf) = run()
    assert [g[1] for g in got] == [w[1] for w in want]
    # float64 softmax over the shortlist against float32 over every
    # lineage, through the calibrator's logistic: within 2e-5
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want],
                               atol=2e-5)
    np.testing.assert_array_equal(ch, want_ch)
    np.testing.assert_allclose(cf, want_cf, atol=2e-5)
    monkeypatch.setattr(shortlist, "GENERA", 2)
    ch, cf = clf.predict_ranks(seqs[:60])
    leaves = {tuple(row) for row in clf.labels.leaf_to_class.T.tolist()}
    for row in ch.tolist():
        known = [c for c in row if c >= 0]
        assert any(tuple(lf[:len(known)]) == tuple(known) for lf in leaves)
    assert ((cf >= 0) & (cf <= 1)).all()


def test_embedding_neighbours_are_the_nearest_rows_of_the_shortlist(
        monkeypatch):
    """Where embedding neighbours only vote, the shortlist searches the
    memory rows of each read's lineages: the nearest of those by cosine,
    ties by row index, -inf where a shortlist holds fewer rows."""
    enc, memory, queries, z, head, genus, cal = setting(seed=5)
    monkeypatch.setattr(shortlist, "MIN_LEAVES", 1)
    monkeypatch.setattr(shortlist, "GENERA", 2)
    caller = Caller(dict(cal, mixture={"net": 0.5, "kmer": 0.3, "emb": 0.2,
                                       "k": 5, "tau": 0.05}), enc, memory)
    sl = caller.shortlist
    rows, pos, _ = sl.positions(genus(z[:30]).detach(),
                                np.full((30, 0), -1, dtype=np.int64))
    first = np.searchsorted(rows, np.arange(30))
    idx, sim = sl.embedding_neighbours(memory, z[:30], pos, first, 8)
    ref = memory.embeddings.float()      # stored normalised (float16)
    q = torch.nn.functional.normalize(z[:30], dim=1)
    leaf = memory.leaf.numpy()
    for b in range(30):
        mine = np.flatnonzero(np.isin(leaf, pos[rows == b]))
        s = (ref[mine] @ q[b]).numpy()
        want = mine[np.lexsort((mine, -s))][:8]
        k = min(8, len(mine))
        assert idx[b, :k].tolist() == want.tolist()
        assert np.isinf(sim[b, k:]).all()
        np.testing.assert_allclose(sim[b, :k], np.sort(s)[::-1][:k],
                                   atol=1e-6)
