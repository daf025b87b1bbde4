"""The pretrained backbone shipped with the package.

``q2_barcodemamba/data/backbone-tiny/`` holds a ``tiny`` backbone pretrained
by :func:`.pretrain.pretrain` on the 116,890 unlabelled ITS sequences of
``pretrain_unlabelled.fasta.gz`` (see ``docs/pretraining.md`` for the exact
command, time and loss curve). ``fit-classifier`` starts from it by default.
"""
import os

SHIPPED_NAME = "backbone-tiny"
SHIPPED_PRESET = "tiny"


def shipped_backbone_path() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "data", SHIPPED_NAME)


def shipped_backbone(preset_name: str = SHIPPED_PRESET):
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

