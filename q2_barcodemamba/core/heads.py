"""Which classification heads a network has, and their targets.

A network predicts the columns of the (n, R + 1) target matrix: the R
ranks of the :class:`.taxonomy.LabelEncoder` plus the leaf head over whole
reference lineages (``heads='multi'``, BarcodeMamba+), or the leaf head
only (``heads='single'``). Predictions always come from the leaf head.
"""
from typing import List, Sequence, Tuple

import numpy as np

HEADS = ("multi", "single")


def head_index(labels, heads: str) -> List[int]:
    """Columns of the (n, R + 1) target matrix that the network predicts:
    all ranks + leaf ('multi', BarcodeMamba+) or the leaf only ('single')."""
    if heads == "multi":
        return list(range(len(labels.n_classes) + 1))
    if heads == "single":
        return [len(labels.n_classes)]
    raise ValueError(f"heads must be 'multi' or 'single', not {heads!r}.")


def head_sizes(labels, heads: str) -> List[int]:
    """Number of classes of each head, in the network's order."""
    sizes = labels.n_classes + [len(labels.leaves)]
    return [sizes[h] for h in head_index(labels, heads)]


def head_names(labels, heads: str) -> List[str]:
    """Rank name of each head ('leaf' for the leaf head)."""
    names = list(labels.rank_names) + ["leaf"]
    return [names[h] for h in head_index(labels, heads)]


def targets(labels, lineages: Sequence[Tuple[str, ...]]) -> np.ndarray:
    """(n, R + 1) targets: class per rank, then the leaf; -1 = unknown."""
    y_rank, y_leaf = labels.encode(lineages)
    return np.concatenate([y_rank, y_leaf[:, None]], axis=1)
