"""Messy real-world input: taxonomy styles, placeholders, long reads,
orientation, broken artifacts, GPU out-of-memory."""
import json

import numpy as np
import pytest
import torch

from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import TrainConfig
from q2_barcodemamba.core.data import clean_sequence, reverse_complement
from q2_barcodemamba.core.io import load_classifier, save_classifier
from q2_barcodemamba.core.taxonomy import LabelEncoder, parse_taxonomy
from q2_barcodemamba.tests.helpers import small_reference, tiny_classifier

QUIET = dict(progress=lambda m: None)


def quick_fit(ids, seqs, tax, **kw):
    tc = TrainConfig(epochs=1, batch_size=32, vocab_size=128, n_threads=2,
                     **kw)
    return TaxonomicClassifier("tiny", train_config=tc).fit(ids, seqs, tax,
                                                            **QUIET)


def subset(n=120):
    ids, seqs, tax = small_reference()
    return list(ids[:n]), list(seqs[:n]), {i: tax[i] for i in ids[:n]}


@pytest.mark.parametrize("style", ["silva", "none"])
def test_other_taxonomy_styles_are_kept_verbatim(style):
    ids, seqs, tax = subset()
    if style == "silva":   # d__Eukaryota;p__...; ranks with SILVA prefixes
        tax = {i: t.replace("k__Fungi", "d__Eukaryota") for i, t in tax.items()}
    else:                  # no prefixes at all
        tax = {i: ";".join(p[3:] for p in t.split(";"))
               for i, t in tax.items()}
    clf = quick_fit(ids, seqs, tax)
    calls = [t for _, t, _ in clf.predict(zip(ids[:20], seqs[:20]),
                                          confidence=None, **QUIET)]
    first = {t.split(";")[0] for t in tax.values()}
    assert all(c.split(";")[0] in first for c in calls)
    assert len(calls[0].split(";")) == 7


def test_placeholders_unknown_ends_lineage_but_sp_and_incertae_are_classes():
    lin = parse_taxonomy(
        ["a", "b", "c", "d"],
        ["k__F;p__A;f__Incertae_sedis;g__X;s__X_sp",
         "k__F;p__A;f__Incertae_sedis;g__X;s__unidentified",
         "k__F;p__A;f__;g__Y;s__Y_z",
         "k__F;p__A;f__Unknown;g__unidentified;s__"])
    assert lin[0][-1] == "s__X_sp" and len(lin[0]) == 5
    assert lin[1] == ("k__F", "p__A", "f__Incertae_sedis", "g__X")
    assert lin[2] == ("k__F", "p__A")   # empty family ends the lineage
    assert lin[3] == ("k__F", "p__A")
    enc = LabelEncoder.fit(lin, 5)
    y, _ = enc.encode(lin)
    assert (y[2, 2:] == -1).all() and (y[0] >= 0).all()


def test_single_class_ranks_train():
    ids, seqs, tax = subset(300)
    # only Ascomycota: single-class kingdom and phylum heads
    keep = [k for k, i in enumerate(ids) if "p__Ascomycota" in tax[i]]
    ids, seqs = [ids[k] for k in keep], [seqs[k] for k in keep]
    clf = quick_fit(ids, seqs, {i: tax[i] for i in ids})
    assert clf.labels.n_classes[:2] == [1, 1]
    out = list(clf.predict(zip(ids[:5], seqs[:5]), confidence=None, **QUIET))
    assert all(t.startswith("k__Fungi;p__") for _, t, _ in out)


def test_conflicting_lineages_warn_and_name_the_taxon():
    ids, seqs, tax = subset()
    genus = [tax[i].split(";")[5] for i in ids]
    i = next(i for i, g in zip(ids, genus) if genus.count(g) > 1)
    parts = tax[i].split(";")
    parts[4] = "f__Madeupaceae"
    tax[i] = ";".join(parts)
    with pytest.warns(UserWarning, match=parts[5]):
        quick_fit(ids, seqs, tax)


def test_long_reads_keep_their_five_prime_end():
    clf = tiny_classifier()
    _, seqs, _ = small_reference()
    long_read = clean_sequence(seqs[0] * 20, "x")   # ~12 kb
    ids = clf.tokenizer.encode([long_read], clf.train_config.max_length)[0]
    assert len(ids) == clf.train_config.max_length
    assert long_read.startswith(clf.tokenizer.decode(ids))
    out = list(clf.predict([("long", long_read)], confidence=None, **QUIET))
    assert out[0][1] != "Unassigned"


def test_reverse_complement_reads_classified_like_forward_reads():
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    fwd = [(i, s) for i, s in zip(ids[:150], seqs[:150])]
    rev = [(i, reverse_complement(clean_sequence(s, i))) for i, s in fwd]
    mixed = [r if k % 2 else f for k, (f, r) in enumerate(zip(fwd, rev))]
    a = [t for _, t, _ in clf.predict(fwd, confidence=None, **QUIET)]
    b = [t for _, t, _ in clf.predict(rev, confidence=None, **QUIET)]
    c = [t for _, t, _ in clf.predict(mixed, confidence=None, **QUIET)]
    assert a == b == c
    same = [t for _, t, _ in clf.predict(rev, confidence=None,
                                         read_orientation="same", **QUIET)]
    assert same != a   # the check matters: without it RC reads differ


def test_config_weight_mismatch_is_reported(tmp_path):
    save_classifier(tiny_classifier(), str(tmp_path / "c"))
    cfg_path = tmp_path / "c" / "config.json"
    cfg = json.load(open(cfg_path))
    cfg["model_config"]["d_model"] = 64
    cfg["model_config"]["d_intermediate"] = 128
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(ValueError, match="does not match config.json.*"
                                         "written by q2-barcodemamba"):
        load_classifier(str(tmp_path / "c"))


def test_cuda_out_of_memory_retries_with_smaller_batches(monkeypatch):
    clf = tiny_classifier()
    ids, seqs, _ = small_reference()
    expected = list(clf.predict(zip(ids[:70], seqs[:70]), confidence=None,
                                batch_size=64, **QUIET))
    real_embed = type(clf.net).embed
    sizes = []

    def flaky(self, tokens, mask=None):
        sizes.append(tokens.shape[0])
        if tokens.shape[0] > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return real_embed(self, tokens, mask)

    monkeypatch.setattr(type(clf.net), "embed", flaky)
    messages = []
    try:
        got = list(clf.predict(zip(ids[:70], seqs[:70]), confidence=None,
                               batch_size=64, progress=messages.append))
    finally:
        clf._oom_batch_size = None
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected],
                               rtol=1e-4)
    assert any("out of memory" in m and "batch_size 16" in m
               for m in messages)
    assert max(sizes[sizes.index(16):]) <= 16
