"""Pretraining, backbones, fine-tuning, heads and presets (issue 4)."""
import json
import math
import os

import pytest
import torch

from q2_barcodemamba.core import io
from q2_barcodemamba.core.backbones import (SHIPPED_PRESET, shipped_backbone,
                                            shipped_backbone_path)
from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import (FINETUNE_LR, PRESETS, SCRATCH_LR,
                                         PretrainConfig, TrainConfig, preset)
from q2_barcodemamba.core.model import Backbone, BarcodeMambaLM
from q2_barcodemamba.core.pretrain import backbone_from_checkpoint, pretrain

from .helpers import small_reference, yeasts


def corpus(n=240):
    ids, seqs, _ = yeasts()
    return list(ids[:n]), list(seqs[:n])


def quick_config(**kw):
    base = dict(epochs=3, batch_size=32, vocab_size=192, n_threads=2,
                log_every=0, validation_fraction=0.1, learning_rate=2e-3)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def small_backbone():
    ids, seqs = corpus()
    return pretrain(ids, seqs, "tiny", config=quick_config(),
                    progress=lambda m: None)


def test_next_token_loss_falls(small_backbone):
    h = small_backbone.info["history"]
    assert [r["epoch"] for r in h] == [1, 2, 3]
    # from ~ln(V) = 5.26 nats at random init to clearly below it
    assert h[0]["train_loss"] < math.log(192) + 0.5
    assert h[-1]["val_loss"] < h[0]["val_loss"] - 0.2
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert all(r["tokens_per_s"] > 0 for r in h)
    # the backbone holds exactly the Backbone weights (LM head is tied)
    expected = Backbone(small_backbone.model_config).state_dict()
    assert set(small_backbone.state) == set(expected)
    lm = BarcodeMambaLM(small_backbone.model_config)
    assert lm.num_parameters() == sum(v.numel() for v in expected.values())


def test_pretraining_is_seeded(small_backbone):
    ids, seqs = corpus()
    again = pretrain(ids, seqs, "tiny", config=quick_config(),
                     progress=lambda m: None)
    for k, v in small_backbone.state.items():
        assert torch.equal(v, again.state[k]), k


def test_resume_from_checkpoint_matches_uninterrupted_run(small_backbone,
                                                          tmp_path):
    ids, seqs = corpus()
    ck = str(tmp_path / "ck")

    def stop_after_epoch_2(msg):
        if msg.startswith("epoch 2/3"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        pretrain(ids, seqs, "tiny", config=quick_config(), checkpoint_dir=ck,
                 progress=stop_after_epoch_2)
    state = json.load(open(os.path.join(ck, "checkpoint.json")))
    assert state["epoch"] == 1
    assert sorted(os.listdir(ck)) == ["checkpoint.json",
                                      "checkpoint.safetensors"]
    # the interrupted run's last checkpoint can be used already
    partial = backbone_from_checkpoint(ck)
    assert partial.info["checkpoint_epoch"] == 1
    msgs = []
    resumed = pretrain(ids, seqs, "tiny", config=quick_config(),
                       checkpoint_dir=ck, progress=msgs.append)
    assert any("resuming" in m and "after epoch 1" in m for m in msgs)
    assert [r["epoch"] for r in resumed.info["history"]] == [1, 2, 3]
    for k, v in small_backbone.state.items():
        torch.testing.assert_close(resumed.state[k], v, rtol=1e-5,
                                   atol=1e-6, msg=k)
    with pytest.raises(ValueError, match="checkpoint of another run"):
        pretrain(ids, seqs, "tiny", config=quick_config(learning_rate=1e-3),
                 checkpoint_dir=ck, progress=lambda m: None)


def test_bad_pretraining_input_names_the_record():
    with pytest.raises(ValueError, match="'b'.*empty"):
        pretrain(["a", "b"], ["ACGTACGTAC", "--"], config=quick_config())
    with pytest.raises(ValueError, match="'a' occurs more than once"):
        pretrain(["a", "a"], ["ACGTACGT", "ACGTTT"], config=quick_config())
    with pytest.raises(ValueError, match="'x'.*invalid character 'Z'"):
        pretrain(["x"], ["ACGZ"], config=quick_config())


def test_backbone_roundtrip_and_damage(small_backbone, tmp_path):
    path = str(tmp_path / "bb")
    io.save_backbone(small_backbone, path)
    assert sorted(os.listdir(path)) == ["backbone.safetensors", "config.json",
                                        "tokenizer.json"]
    back = io.load_backbone(path)
    assert back.model_config == small_backbone.model_config
    assert back.tokenizer.to_json() == small_backbone.tokenizer.to_json()
    for k, v in small_backbone.state.items():
        assert torch.equal(back.state[k], v)
    with pytest.raises(FileExistsError):
        io.save_backbone(small_backbone, path)
    # a backbone is not a classifier, and the other way round
    with pytest.raises(ValueError, match="backbone.*not a classifier"):
        io.load_classifier(path)
    # truncated weights
    w = os.path.join(path, "backbone.safetensors")
    data = open(w, "rb").read()
    open(w, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or truncated"):
        io.load_backbone(path)
    # a newer format
    io.save_backbone(small_backbone, str(tmp_path / "bb2"))
    cfg_path = str(tmp_path / "bb2" / "config.json")
    cfg = json.load(open(cfg_path))
    cfg["format_version"] = 99
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(ValueError, match="format version 99.*Upgrade"):
        io.load_backbone(str(tmp_path / "bb2"))


def test_finetuning_starts_from_the_backbone(small_backbone):
    ids, seqs, tax = small_reference()
    ids, seqs = ids[:300], seqs[:300]
    tc = TrainConfig(epochs=1, learning_rate=1e-9, refit=False, n_threads=2,
                     weight_decay=0.0)
    clf = TaxonomicClassifier("tiny", train_config=tc)
    clf.fit(ids, seqs, {i: tax[i] for i in ids}, backbone=small_backbone,
            progress=lambda m: None)
    assert clf.tokenizer.to_json() == small_backbone.tokenizer.to_json()
    assert clf.model_config.vocab_size == small_backbone.model_config.vocab_size
    got = clf.net.backbone.state_dict()
    for k, v in small_backbone.state.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-5, msg=k)
    # learning rate defaults: scratch vs fine-tuning
    assert TaxonomicClassifier("tiny").train_config.learning_rate is None
    c2 = TaxonomicClassifier("tiny", train_config=TrainConfig(
        epochs=1, refit=False, n_threads=2))
    c2.fit(ids, seqs, {i: tax[i] for i in ids}, backbone=small_backbone,
           progress=lambda m: None)
    assert c2.train_config.learning_rate == FINETUNE_LR
    assert c2.summary["backbone"]["preset"] == "tiny"
    assert SCRATCH_LR != FINETUNE_LR


def test_single_head_gives_consistent_lineages(tmp_path):
    ids, seqs, tax = small_reference()
    tc = TrainConfig(epochs=2, refit=False, n_threads=2, heads="single")
    clf = TaxonomicClassifier("tiny", train_config=tc)
    clf.fit(ids, seqs, tax, progress=lambda m: None)
    assert clf.net.n_classes == [len(clf.labels.leaves)]
    assert len(clf.net.heads) == 1
    preds = list(clf.predict(zip(ids[:60], seqs[:60]), confidence=None,
                             progress=lambda m: None))
    leaves = set(clf.labels.leaves)
    for _, taxon, conf in preds:
        assert taxon in leaves  # a whole reference lineage
        assert 0 < conf <= 1
    io.save_classifier(clf, str(tmp_path / "c"))
    back = io.load_classifier(str(tmp_path / "c"))
    assert back.train_config.heads == "single"
    assert list(back.predict(zip(ids[:60], seqs[:60]), confidence=None,
                             progress=lambda m: None)) == preds
    with pytest.raises(ValueError, match="heads must be 'multi' or 'single'"):
        TaxonomicClassifier("tiny", train_config=TrainConfig(
            epochs=1, heads="both")).fit(ids, seqs, tax,
                                        progress=lambda m: None)


def test_paper_sizes():
    """Parameter counts vs the paper (12.1M, 49.2M). Assumed: an 8192-token
    BPE vocabulary, output projection tied to the embedding, no
    classification heads (these depend on the reference's taxa)."""
    def count(name, vocab):
        return sum(p.numel() for p in
                   Backbone(preset(name, vocab_size=vocab)).parameters())
    assert abs(count("paper-12m", 8192) / 12.1e6 - 1) < 0.01
    assert abs(count("paper-50m", 8192) / 49.2e6 - 1) < 0.01
    assert PRESETS["paper-12m"]["n_layers"] == 2
    assert PRESETS["paper-12m"]["d_model"] == 384
    assert PRESETS["paper-50m"]["n_layers"] == 4
    assert PRESETS["paper-50m"]["d_model"] == 768
    for name in ("paper-12m", "paper-50m"):
        p = PRESETS[name]
        assert (p["d_state"], p["headdim"], p["expand"]) == (64, 48, 2)
    # the CPU preset stays small
    assert count("tiny", 1024) < 1e6


def test_shipped_backbone_is_the_tiny_default():
    assert os.path.isdir(shipped_backbone_path())
    size = os.path.getsize(os.path.join(shipped_backbone_path(),
                                        "backbone.safetensors"))
    assert size < 5e6
    bb = shipped_backbone()
    assert bb.info["preset"] == SHIPPED_PRESET == "tiny"
    assert bb.model_config == preset("tiny", vocab_size=1024)
    assert bb.info["n_sequences"] == 116890
    val = [r["val_loss"] for r in bb.info["history"]]
    assert len(val) == 15 and val[-1] < val[0] - 0.5
    assert shipped_backbone("small") is None
    # it predicts real ITS better than chance: next-token loss on bundled
    # yeast reads far below ln(1024) = 6.93 nats
    from q2_barcodemamba.core.pretrain import lm_validation_loss
    lm = BarcodeMambaLM(bb.model_config)
    lm.backbone.load_state_dict(bb.state)
    _, seqs = corpus(200)
    loss = lm_validation_loss(lm, bb.tokenizer.encode(seqs, 512), 64, "cpu")
    assert loss < 4.5
