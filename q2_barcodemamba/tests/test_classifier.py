"""Core classifier: fit/predict, save/load round trip, bad input."""
import json
import os

import numpy as np
import pytest

from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import TrainConfig
from q2_barcodemamba.core.data import reverse_complement
from q2_barcodemamba.core.io import load_classifier, save_classifier

from q2_barcodemamba.tests.helpers import (assert_safetensors,
                                           small_reference, tiny_classifier)


def test_predict_is_a_walk_over_predict_proba():
    """predict's lineages are the top-down walk over predict_proba's
    lineage probabilities on the same reads; predict_proba cleans and
    orients reads as predict does."""
    import torch
    from q2_barcodemamba.core.inference import hierarchical_walk
    clf = tiny_classifier()
    ids, seqs, tax = small_reference()
    out = list(clf.predict(zip(ids[:40], seqs[:40]), confidence=None,
                           progress=lambda m: None))
    assert [o[0] for o in out] == ids[:40]
    probs = clf.predict_proba(seqs[:40])
    assert probs.shape == (40, len(clf.labels.leaves))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    chosen, _ = hierarchical_walk(torch.as_tensor(probs),
                                  torch.as_tensor(clf.labels.leaf_to_class),
                                  clf.labels.n_classes)
    deepest = [clf.labels.classes[len(row) - 1][row[-1]]
               for row in chosen.tolist()]
    assert [o[1] for o in out] == deepest
    # lower case, gaps and the other strand give the same probabilities
    messy = [reverse_complement(s.upper())[:10].lower() + "-"
             + reverse_complement(s.upper())[10:] for s in seqs[:8]]
    np.testing.assert_allclose(clf.predict_proba(messy), probs[:8],
                               atol=1e-5)
    # predict_ranks gives predict's calls and confidences per rank
    ch, conf = clf.predict_ranks(seqs[:40])
    assert ch.tolist() == chosen.tolist()
    np.testing.assert_allclose([o[2] for o in out], conf[:, -1], rtol=1e-6)


def test_confidence_contract_for_calls_and_unassigned():
    """Confidence is that of the deepest reported rank; a read that fails
    even the top rank is Unassigned with 1 - the top rank's confidence;
    with confidence disabled every read gets its deepest rank."""
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    ch, conf = clf.predict_ranks(seqs[:30])
    assert (np.diff(conf, axis=1) <= 1e-12).all()    # deeper never higher
    n_unassigned = 0
    for t in (float(np.median(conf[:, -1])),
              min(1.0, float(conf[:, 0].max()) + 1e-6)):
        out = list(clf.predict(zip(ids[:30], seqs[:30]), confidence=t,
                               progress=lambda m: None))
        for (_, taxon, c), row_c in zip(out, conf):
            if row_c[0] < t:
                assert taxon == "Unassigned"
                assert c == pytest.approx(1 - row_c[0])
                n_unassigned += 1
            else:
                depth = int((row_c >= t).sum()) - 1
                assert taxon.count(";") == depth
                assert c == pytest.approx(row_c[depth])
    assert n_unassigned >= 30


def test_format1_classifier_still_loads_and_classifies():
    """A classifier written by 0.1.0 (format 1: no reference memory, a
    temperature and threshold only) classifies as it did then."""
    import csv
    from q2_barcodemamba.tests.helpers import data_path
    base = os.path.join(os.path.dirname(__file__), "data",
                        "classifier-format1")
    clf = load_classifier(base)
    assert clf.memory is None
    with open(base + "-calls.tsv") as fh:
        want = list(csv.DictReader(fh, delimiter="\t"))
    ids, seqs, _ = small_reference()
    by_id = dict(zip(ids, seqs))
    got = list(clf.predict([(w["Feature ID"], by_id[w["Feature ID"]])
                            for w in want], progress=lambda m: None))
    assert [g[1] for g in got] == [w["Taxon"] for w in want]
    np.testing.assert_allclose([g[2] for g in got],
                               [float(w["Confidence"]) for w in want],
                               rtol=1e-5)
    assert data_path("")   # helpers importable


def test_save_load_gives_bit_identical_predictions(tmp_path):
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    save_classifier(clf, str(tmp_path / "clf"))
    assert sorted(os.listdir(tmp_path / "clf")) == [
        "config.json", "labels.json", "model.safetensors", "tokenizer.json"]
    clf2 = load_classifier(str(tmp_path / "clf"))
    a = clf.predict_proba(seqs[:64])
    b = clf2.predict_proba(seqs[:64])
    assert np.array_equal(a, b)
    cfg = json.load(open(tmp_path / "clf" / "config.json"))
    assert cfg["format_version"] == 4 and cfg["package_version"]
    # every read, then the ITS1/ITS2 amplicons cut from them
    n_cut = sum(clf.summary["region_cutouts"].values())
    assert clf2.memory is not None and len(clf2.memory) == len(ids) + n_cut
    assert n_cut > len(ids)
    assert np.array_equal(clf2.memory.embeddings.numpy(),
                          clf.memory.embeddings.numpy())
    assert clf2.calibration == json.loads(json.dumps(clf.calibration))
    calls = list(clf.predict(zip(ids[:30], seqs[:30]),
                             progress=lambda m: None))
    assert list(clf2.predict(zip(ids[:30], seqs[:30]),
                             progress=lambda m: None)) == calls
    with pytest.raises(FileExistsError):
        save_classifier(clf, str(tmp_path / "clf"))


def test_no_pickle_in_saved_classifier(tmp_path):
    save_classifier(tiny_classifier(), str(tmp_path / "clf"))
    for name in os.listdir(tmp_path / "clf"):
        data = open(tmp_path / "clf" / name, "rb").read()
        assert b"torch._utils" not in data and b"cnumpy" not in data
        if name.endswith(".safetensors"):
            assert_safetensors(data, name)
        else:
            # pickle protocol 2+ streams start with b"\x80"; JSON with "{"
            assert data.startswith(b"{"), name


def test_empty_short_and_reverse_reads_in_classify():
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    recs = [("empty", ""), ("short", "ACGTACGT"), ("fwd", seqs[0]),
            ("rev", reverse_complement(seqs[0].upper()))]
    out = {r: (t, c) for r, t, c in clf.predict(recs, confidence=None,
                                               progress=lambda m: None)}
    assert out["empty"] == ("Unassigned", 0.0)
    assert out["short"] == ("Unassigned", 0.0)
    assert out["fwd"] == out["rev"]
    same = dict((r, t) for r, t, _ in clf.predict(
        recs[2:], confidence=None, read_orientation="same",
        progress=lambda m: None))
    assert same["fwd"] == out["fwd"][0]


def test_classify_rejects_invalid_characters_and_duplicate_ids():
    clf = tiny_classifier()
    with pytest.raises(ValueError, match="'bad'.*'Z' at position 3"):
        list(clf.predict([("bad", "ACZ")], progress=lambda m: None))
    with pytest.raises(ValueError, match="'x' occurs more than once"):
        list(clf.predict([("x", "ACGT" * 10), ("x", "ACGT" * 10)],
                         progress=lambda m: None))
    # a duplicate in a later chunk than the first occurrence
    recs = [(f"r{i}", "ACGT" * 10) for i in range(5)] + [("r1", "ACGT" * 10)]
    with pytest.raises(ValueError, match="'r1' occurs more than once"):
        list(clf.predict(recs, chunk_size=2, progress=lambda m: None))


@pytest.mark.parametrize("mutate,message", [
    (lambda i, s, t: (i + [i[0]], s + [s[0]], t), "occur more than once"),
    (lambda i, s, t: (i, s, {k: v for k, v in t.items() if k != i[3]}),
     "1 reference reads have no taxonomy"),
    (lambda i, s, t: (i, [""] + s[1:], t), "is 0 bp long"),
    (lambda i, s, t: ([], [], t), "No reference reads were given"),
    (lambda i, s, t: (i, s, {**t, i[2]: "k__Fungi;p__Ascomycota"}),
     "has 2 ranks"),
])
def test_fit_rejects_inconsistent_reference(mutate, message):
    ids, seqs, tax = small_reference()
    ids, seqs, tax = mutate(list(ids[:50]), list(seqs[:50]),
                            {i: tax[i] for i in ids[:50]})
    clf = TaxonomicClassifier("tiny", train_config=TrainConfig(epochs=1))
    with pytest.raises(ValueError, match=message):
        clf.fit(ids, seqs, tax, progress=lambda m: None)


def test_same_seed_same_classifier():
    ids, seqs, tax = small_reference()
    ids, seqs = ids[:150], seqs[:150]
    tax = {i: tax[i] for i in ids}
    tc = TrainConfig(epochs=1, batch_size=32, vocab_size=128, random_seed=7,
                     n_threads=1)
    a = TaxonomicClassifier("tiny", train_config=tc).fit(
        ids, seqs, tax, progress=lambda m: None)
    b = TaxonomicClassifier("tiny", train_config=tc).fit(
        ids, seqs, tax, progress=lambda m: None)
    assert np.array_equal(a.predict_proba(seqs[:20]),
                          b.predict_proba(seqs[:20]))


def test_auto_confidence_uses_calibrated_threshold():
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    recs = list(zip(ids[:30], seqs[:30]))
    best = clf.calibration["best_confidence"]
    assert best in clf.calibration["thresholds"]
    auto = list(clf.predict(recs, confidence="auto", progress=lambda m: None))
    fixed = list(clf.predict(recs, confidence=best, progress=lambda m: None))
    assert auto == fixed
    with pytest.raises(ValueError, match="confidence must be in"):
        list(clf.predict(recs, confidence=1.5, progress=lambda m: None))


def test_classify_batch_size_auto_and_validation():
    import torch
    from q2_barcodemamba.core.classifier import (GPU_BATCH,
                                                 classify_batch_size)
    assert classify_batch_size("auto", torch.device("cpu")) == 0
    assert classify_batch_size(None, torch.device("cuda")) == GPU_BATCH
    assert classify_batch_size(7, torch.device("cpu")) == 7
    for bad in (0, -3, 2.5, "big", True):
        with pytest.raises(ValueError, match="batch_size must be"):
            classify_batch_size(bad, torch.device("cpu"))
    # token-capped CPU batches give the same calls as fixed-size batches
    clf = tiny_classifier()
    recs = [(f"r{i}", "ACGTTGCA" * (3 + i % 40)) for i in range(90)]
    quiet = lambda m: None  # noqa: E731
    auto = list(clf.predict(recs, batch_size="auto", progress=quiet))
    fixed = list(clf.predict(recs, batch_size=16, progress=quiet))
    assert [a[:2] for a in auto] == [f[:2] for f in fixed]
    assert np.allclose([a[2] for a in auto], [f[2] for f in fixed],
                       atol=1e-5)


def test_taxonomy_with_more_ids_than_reads_is_accepted():
    """A taxonomy covering more ids than the reads (e.g. all of UNITE beside
    filtered reads) is used for the reads it covers; the other records are
    ignored and counted in the progress output, as classify-sklearn does.
    They do not change the classifier."""
    ids, seqs, tax = small_reference()
    ids, seqs = ids[:120], seqs[:120]
    own = {i: tax[i] for i in ids}
    # extra records first, one with another number of ranks
    extra = {"ghost-1": "k__Fungi;p__Nowhere", **{
        f"ghost-{k}": tax[i] for k, i in enumerate(ids[:40], start=2)}}
    tc = TrainConfig(epochs=1, batch_size=32, vocab_size=128, n_threads=2,
                     random_seed=3, refit=False)
    msgs = []
    a = TaxonomicClassifier("tiny", train_config=tc).fit(
        ids, seqs, {**extra, **own}, progress=msgs.append)
    assert "reference taxonomy: 41 records without a reference read " \
           "ignored" in msgs
    b = TaxonomicClassifier("tiny", train_config=tc).fit(
        ids, seqs, own, progress=msgs.append)
    assert a.labels.to_dict() == b.labels.to_dict()
    assert np.array_equal(a.predict_proba(seqs[:20]),
                          b.predict_proba(seqs[:20]))
    # reads without taxonomy stay an error
    with pytest.raises(ValueError, match="2 reference reads have no "
                                         "taxonomy.*Every reference read"):
        TaxonomicClassifier("tiny", train_config=tc).fit(
            ids, seqs, {i: own[i] for i in ids[2:]}, progress=msgs.append)
