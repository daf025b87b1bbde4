"""The query mix at classify time (``novel_species``/``novel_genera``): the
calibration chosen again on the validation evidence a classifier keeps
(format 3), weighted to the mix a user expects."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from q2_barcodemamba.core.novelty import (MIN_MIX_SHIFT, novelty_weights,
                                          refit_for_novelty,
                                          validation_shares)
from q2_barcodemamba.core.calibrator import RankCalibrator
from q2_barcodemamba.core.inference import THRESHOLDS, right_call_curve
from q2_barcodemamba.core.io import load_classifier, save_classifier
from q2_barcodemamba.tests.helpers import small_reference, tiny_classifier


_shares = validation_shares


def test_weights_of_the_validation_mix_are_one_and_bad_mixes_fail():
    kind = np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_allclose(novelty_weights(kind, 0.5), np.ones(6))
    np.testing.assert_allclose(novelty_weights(kind, 0.5, 1 / 3),
                               np.ones(6))
    w = novelty_weights(kind, 0.8, 0.2)     # shares 0.2 / 0.6 / 0.2
    np.testing.assert_allclose(
        [w[kind == k].sum() / w.sum() for k in (0, 1, 2)], [0.2, 0.6, 0.2])
    with pytest.raises(ValueError, match="novel_genera must be in"):
        novelty_weights(kind, 0.3, 0.5)
    with pytest.raises(ValueError, match="novel_species must be in"):
        novelty_weights(kind, 1.5)
    with pytest.raises(ValueError, match="no held-out genera"):
        novelty_weights(np.array([0, 0, 1]), 0.5, 0.2)


def test_weights_count_like_repeated_reads():
    """A weight of 2 is the read listed twice: in the right-call curve and
    in the calibrator's fit."""
    rng = np.random.default_rng(0)
    n, R, F = 300, 3, 2
    X = rng.uniform(0.05, 0.95, (n, R, F))
    y = rng.uniform(size=(n, R)) < X[..., 0]
    w = rng.integers(1, 3, n).astype(float)
    rep = np.repeat(np.arange(n), w.astype(int))
    feats = ["mass", "kmer_top"]
    a = RankCalibrator.fit(X, y, feats, weight=w)
    b = RankCalibrator.fit(X[rep], y[rep], feats)
    np.testing.assert_allclose(a.weight, b.weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.bias, b.bias, rtol=1e-4, atol=1e-6)
    chosen = rng.integers(0, 2, (n, R))
    target = rng.integers(-1, 2, (n, R))
    np.testing.assert_allclose(
        right_call_curve(chosen, X[..., 0], target, THRESHOLDS, w),
        right_call_curve(chosen[rep], X[rep, :, 0], target[rep], THRESHOLDS))


def test_validation_mix_reproduces_the_fitted_calibration():
    clf = tiny_classifier()
    ev = clf.evidence
    assert ev is not None and len(ev["kind"]) == len(ev["chosen"])
    assert {0, 1} <= set(np.unique(ev["kind"]).tolist())
    ns, ng = _shares(ev["kind"])
    # weights of the validation's own mix are all 1: the same choice
    again = refit_for_novelty(clf.calibration, ev, "auto", ns, ng)
    for key in ("abstention", "best_confidence", "features", "mixture"):
        assert again[key] == clf.calibration[key], key
    assert again["score"] == pytest.approx(clf.calibration["score"])
    if clf.calibration["calibrator"]:
        np.testing.assert_allclose(again["calibrator"]["weight"],
                                   clf.calibration["calibrator"]["weight"],
                                   atol=1e-6)
    # a mix within MIN_MIX_SHIFT of validation's keeps the fitted one
    near = min(1.0, ns + MIN_MIX_SHIFT / 2)
    assert clf.calibration_for(near) is clf.calibration
    ids, seqs, _ = small_reference()
    recs = list(zip(ids[:120], seqs[:120]))
    quiet = (lambda m: None)
    assert list(clf.predict(recs, progress=quiet)) == list(clf.predict(
        recs, progress=quiet, novel_species=near))


def _species_calls(clf, seqs, **mix):
    chosen, conf = clf.predict_ranks(seqs, **mix)
    t = clf.calibration_for(**mix)["best_confidence"]
    depth = np.cumprod((conf >= t) & (chosen >= 0), axis=1).sum(1)
    return int((depth == chosen.shape[1]).sum())


def test_more_expected_novelty_fewer_species_calls():
    clf = tiny_classifier()
    _, seqs, _ = small_reference()
    seqs = list(seqs[::2])
    base = _species_calls(clf, seqs)
    few = _species_calls(clf, seqs, novel_species=0.0)
    many = _species_calls(clf, seqs, novel_species=0.95)
    assert few >= base >= many
    assert many < few


def test_evidence_round_trip_and_format2_fallback(tmp_path):
    clf = tiny_classifier()
    path = str(tmp_path / "clf")
    save_classifier(clf, path)
    cfg = json.load(open(os.path.join(path, "config.json")))
    assert cfg["format_version"] == 4
    assert cfg["validation_evidence"]["features"] == clf.evidence["features"]
    back = load_classifier(path)
    for key in ("chosen", "mass", "y", "folds", "kind", "X"):
        assert np.array_equal(back.evidence[key], clf.evidence[key]), key
    ids, seqs, _ = small_reference()
    recs = list(zip(ids[:40], seqs[:40]))
    quiet = (lambda m: None)
    want = list(clf.predict(recs, progress=quiet, novel_species=0.9))
    assert list(back.predict(recs, progress=quiet, novel_species=0.9)) \
        == want
    # a classifier of 0.2-0.4 (format 2) has no evidence: it classifies as
    # before and says what novel_species needs
    tensors = load_file(os.path.join(path, "model.safetensors"))
    save_file({k: v for k, v in tensors.items()
               if not k.startswith("validation.")},
              os.path.join(path, "model.safetensors"))
    cfg["format_version"] = 2
    del cfg["validation_evidence"]
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
    old = load_classifier(path)
    assert old.evidence is None
    # summarize-classifier says which mix the calibration was chosen for
    from q2_barcodemamba._summary import mix_text
    ns, ng = _shares(clf.evidence["kind"])
    assert f"--p-novel-species {ns:.2f} --p-novel-genera {ng:.2f}" \
        in mix_text(clf)
    assert "novel-species is not available" in mix_text(old)
    assert list(old.predict(recs, progress=quiet)) == list(
        clf.predict(recs, progress=quiet))
    with pytest.raises(ValueError, match="0.5.0 or later"):
        list(old.predict(recs, progress=quiet, novel_species=0.5))
    with pytest.raises(ValueError, match="needs novel_species"):
        clf.calibration_for(novel_genera=0.2)


def test_damaged_evidence_is_named(tmp_path):
    path = str(tmp_path / "clf")
    save_classifier(tiny_classifier(), path)
    f = os.path.join(path, "model.safetensors")
    tensors = load_file(f)
    tensors["validation.mass"] = tensors["validation.mass"][:5].clone()
    save_file(tensors, f)
    with pytest.raises(ValueError, match="validation evidence"):
        load_classifier(path)
    tensors["validation.mass"] = torch.zeros(3)
    del tensors["validation.kind"]
    save_file(tensors, f)
    with pytest.raises(ValueError, match="validation evidence"):
        load_classifier(path)
