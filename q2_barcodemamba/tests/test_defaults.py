"""One place for each default: the configuration dataclasses. The QIIME 2
actions, the command line and the parameter descriptions read them; the
shipped-backbone fallback is decided by one function."""
import inspect

import pandas as pd
import pytest

from q2_barcodemamba import _methods
from q2_barcodemamba.core import cli
from q2_barcodemamba.core.backbones import (PretrainedBackbone,
                                            choose_backbone)
from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import (DEFAULT_PRESET, MIN_READ_LENGTH,
                                         SCRATCH_LR, VOCAB_SIZE, ModelConfig,
                                         PretrainConfig, TrainConfig)
from q2_barcodemamba.core.inference import DEFAULT_CONFIDENCE


def defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def subparser(name):
    ap = cli.parser()
    sub = next(a for a in ap._actions if a.dest == "command")
    return sub.choices[name]


def test_action_signatures_use_the_dataclass_defaults():
    for fn, cfg in ((_methods.pretrain, PretrainConfig()),
                    (_methods.fit_classifier, TrainConfig())):
        shared = {k: v for k, v in defaults(fn).items() if hasattr(cfg, k)}
        assert len(shared) >= 8, fn
        for k, v in shared.items():
            want = getattr(cfg, k)
            if k == "learning_rate" and want is None:
                want = "auto"         # QIIME 2 cannot show None: 'auto'
            assert v == want, (fn.__name__, k, v, want)
        assert defaults(fn)["preset"] == DEFAULT_PRESET
    # classify's defaults are predict's
    want = defaults(TaxonomicClassifier.predict)
    for k, v in defaults(_methods.classify).items():
        assert v == want[k], k


def test_command_line_uses_the_dataclass_defaults():
    for name, cfg in (("pretrain", PretrainConfig()), ("fit", TrainConfig())):
        sub = subparser(name)
        checked = 0
        for action in sub._actions:
            if action.dest in ("help", "dropout") or not hasattr(
                    cfg, action.dest):
                continue
            assert action.default == getattr(cfg, action.dest), (
                name, action.dest)
            checked += 1
        assert checked >= 7, name
        assert sub.get_default("preset") == DEFAULT_PRESET
    fit = subparser("fit")
    tc = TrainConfig()
    assert fit.get_default("refit") is tc.refit
    assert fit.get_default("no_memory") is (not tc.memory)
    assert fit.get_default("no_kmer_similarity") is (not tc.kmer_similarity)
    assert fit.get_default("no_region_cutouts") is (not tc.region_cutouts)
    for arg, field in (("abstention", "abstention"),
                       ("contrastive_weight", "contrastive_weight"),
                       ("augment", "augment"), ("select_epoch_by", "select"),
                       ("unseen_genus_fraction", "unseen_genus_fraction"),
                       ("region_augment", "region_augment"),
                       ("query_region", "query_region"),
                       ("validation_errors", "validation_errors")):
        assert fit.get_default(arg) == getattr(tc, field), arg


def test_one_value_for_the_shared_constants():
    assert (ModelConfig().vocab_size == TrainConfig().vocab_size
            == PretrainConfig().vocab_size == VOCAB_SIZE)
    assert TrainConfig().min_length == MIN_READ_LENGTH


def test_descriptions_state_the_defaults():
    import qiime2.sdk
    plugin = qiime2.sdk.PluginManager().plugins["barcodemamba"]
    fit = plugin.actions["fit_classifier"].signature.parameters
    tc = TrainConfig()
    assert f"for {tc.patience} epochs" in fit["epochs"].description
    assert f"label smoothing of {tc.label_smoothing:g}" in \
        fit["hls_epsilon"].description
    assert f"'auto': {SCRATCH_LR:.0e}".replace("e-03", "e-3") in \
        fit["learning_rate"].description
    confidence = plugin.actions["classify"].signature.parameters[
        "confidence"].description
    assert f"({DEFAULT_CONFIDENCE} when it was trained without one)" in \
        confidence


def test_backbone_fallback_is_decided_once():
    msgs = []
    given = PretrainedBackbone(ModelConfig(), None, {}, {"name": "mine"})
    assert choose_backbone(given, "small", True, msgs.append) is given
    assert choose_backbone(given, "tiny", False, msgs.append) is given
    assert choose_backbone(None, "tiny", False, msgs.append) is None
    assert msgs == []
    shipped = choose_backbone(None, DEFAULT_PRESET, True, msgs.append)
    assert shipped.info["preset"] == DEFAULT_PRESET and msgs == []
    assert choose_backbone(None, "small", True, msgs.append) is None
    assert msgs == ["no pretrained backbone ships for preset 'small': "
                    "training from scratch (pretrain one with 'qiime "
                    "barcodemamba pretrain' and pass it with --i-backbone)"]


@pytest.mark.parametrize("label", ["s__", "__", " g__ ", "", "unidentified",
                                   "s__unidentified", "k__unknown"])
def test_an_empty_or_unknown_rank_ends_the_lineage_everywhere(label):
    """The classifier's reference parser, the evaluation view and the
    benchmarks share one normaliser: an empty rank such as ``s__`` or a
    bare ``__`` is unknown."""
    from q2_barcodemamba import _evaluation
    from q2_barcodemamba.core.taxonomy import (normalize_lineage,
                                               parse_taxonomy)
    taxon = f"k__Fungi;p__Ascomycota;{label};s__Candida_albicans"
    want = ("k__Fungi", "p__Ascomycota")
    assert normalize_lineage(taxon) == want
    assert parse_taxonomy(["r"], [taxon]) == [want]
    pred = pd.DataFrame({"Taxon": [taxon]}, index=["r"])
    res = _evaluation.evaluate(
        pred, pd.Series({"r": "k__Fungi;p__Ascomycota;c__X;s__Y"}), "one")
    assert res["predicted"] == [want]
