"""Pretrained backbones: what pretraining produces, the one shipped with the
package, and which one fine-tuning starts from.

``q2_barcodemamba/data/backbone-tiny/`` holds a ``tiny`` backbone pretrained
by :func:`.pretrain.pretrain` on the 116,890 unlabelled ITS sequences of
``pretrain_unlabelled.fasta.gz`` (see ``docs/pretraining.md`` for the exact
command, time and loss curve). ``fit-classifier`` starts from it by default
(:func:`choose_backbone`).
"""
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from .config import DEFAULT_PRESET, ModelConfig
from .runtime import log
from .tokenizer import DNATokenizer

SHIPPED_NAME = "backbone-tiny"
SHIPPED_PRESET = DEFAULT_PRESET


@dataclass
class PretrainedBackbone:
    """What pretraining produces and fine-tuning starts from."""
    model_config: ModelConfig
    tokenizer: DNATokenizer
    state: Dict[str, torch.Tensor]   # Backbone state_dict (no "backbone.")
    info: dict                       # preset, pretrain_config, history, ...

    def classifier_state(self) -> Dict[str, torch.Tensor]:
        """The weights as keys of :class:`.model.BarcodeMambaNet`."""
        return {f"backbone.{k}": v for k, v in self.state.items()}


def shipped_backbone_path() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "data", SHIPPED_NAME)


def shipped_backbone(preset_name: str = SHIPPED_PRESET
                     ) -> Optional[PretrainedBackbone]:
    """The shipped backbone for ``preset_name``, or None when the package
    ships none for that preset."""
    if preset_name != SHIPPED_PRESET:
        return None
    from .io import load_backbone
    path = shipped_backbone_path()
    if not os.path.isdir(path):
        raise ValueError(
            f"The shipped backbone is missing from {path}; reinstall "
            "q2-barcodemamba, or train from scratch (--p-no-pretrained).")
    bb = load_backbone(path)
    bb.info.setdefault("name", f"shipped:{SHIPPED_NAME}")
    return bb


def choose_backbone(backbone: Optional[PretrainedBackbone], preset_name: str,
                    pretrained: bool,
                    progress: Callable[[str], None] = log
                    ) -> Optional[PretrainedBackbone]:
    """The backbone fine-tuning starts from: ``backbone`` when given, else
    the shipped one of ``preset_name`` when ``pretrained`` (with a message
    when the package ships none for that preset), else None (random
    weights)."""
    if backbone is not None or not pretrained:
        return backbone
    backbone = shipped_backbone(preset_name)
    if backbone is None:
        progress(f"no pretrained backbone ships for preset {preset_name!r}: "
                 "training from scratch (pretrain one with 'qiime "
                 "barcodemamba pretrain' and pass it with --i-backbone)")
    return backbone
