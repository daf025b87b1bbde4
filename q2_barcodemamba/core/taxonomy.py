"""Taxonomic lineages: parsing, validation, label encoding per rank.

Class identity at each rank is the *lineage prefix* down to that rank
(``k__Fungi;...;g__Candida``), so a homonym under two parents stays two
classes and every prediction walk down the tree is consistent.

Unknown labels (``unidentified``, an empty name such as ``s__`` or a bare
``__``, ``unknown``) end a lineage: that rank and all deeper ranks are
ignored in the loss of those ranks and the reference record counts as a
leaf at its deepest known rank. :func:`normalize_lineage` applies the same
rule to calls and expected taxonomies (evaluation views, benchmarks). UNITE placeholders such as ``s__Candida_sp`` or
``f__Saccharomycetales_fam_Incertae_sedis`` are kept as ordinary classes: they
carry real information about the ancestor ranks.
"""
import re
import warnings
from collections import defaultdict
from typing import List, Sequence, Tuple

import numpy as np

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
UNKNOWN_NAMES = {"", "unidentified", "unknown", "unclassified", "none", "na"}
UNASSIGNED_NAMES = {"", "unassigned", "nan"}   # a whole taxon without a call
_PREFIX = re.compile(r"^[A-Za-z]{0,2}__")


def split_lineage(taxon: str) -> List[str]:
    """Split a ``;``-separated lineage into stripped rank labels."""
    return [part.strip() for part in taxon.strip().rstrip(";").split(";")]


def is_unknown(label: str) -> bool:
    """True for ``unidentified``-style placeholders and empty names (with
    or without a rank prefix: ``s__``, ``__``, ``''``)."""
    name = _PREFIX.sub("", label.strip()).strip().lower()
    return name in UNKNOWN_NAMES


def known_depth(labels: Sequence[str]) -> int:
    """Number of leading ranks with a known label."""
    for i, lab in enumerate(labels):
        if is_unknown(lab):
            return i
    return len(labels)


def normalize_lineage(taxon) -> Tuple[str, ...]:
    """Labels of ``taxon`` down to the last known rank: stripped of spaces,
    cut at the first empty or unknown label; empty for ``Unassigned``,
    missing (None, NaN) or blank values."""
    if not isinstance(taxon, str) or taxon.strip().lower() in \
            UNASSIGNED_NAMES:
        return ()
    labels = split_lineage(taxon)
    return tuple(labels[:known_depth(labels)])


def parse_taxonomy(ids: Sequence[str], taxa: Sequence[str]
                   ) -> List[Tuple[str, ...]]:
    """Split lineages and check they all have the same number of ranks.

    Returns one tuple of labels per id, truncated at the first unknown rank.
    Raises ValueError naming the first record whose rank count differs.
    """
    out, n_ranks, first = [], None, None
    for rid, taxon in zip(ids, taxa):
        labels = split_lineage(taxon)
        if n_ranks is None:
            n_ranks, first = len(labels), rid
        elif len(labels) != n_ranks:
            raise ValueError(
                f"Taxonomy of {rid!r} has {len(labels)} ranks ({taxon!r}) but "
                f"{first!r} has {n_ranks}. All reference lineages must have "
                "the same number of ranks: pad missing ranks with e.g. "
                "'s__unidentified'.")
        out.append(tuple(labels[:known_depth(labels)]))
    return out


class LabelEncoder:
    """Per-rank class indices and the leaf tree used for prediction.

    ``classes[r]`` lists the lineage prefixes known at rank ``r``;
    ``leaves`` lists the distinct (truncated) reference lineages — the
    classes of the leaf head whose probabilities are summed up the tree.
    """

    def __init__(self, rank_names: Sequence[str],
                 classes: Sequence[Sequence[str]], leaves: Sequence[str]):
        self.rank_names = list(rank_names)
        self.classes = [list(c) for c in classes]
        self.leaves = list(leaves)
        self.index = [{c: i for i, c in enumerate(cs)} for cs in self.classes]
        self.leaf_index = {c: i for i, c in enumerate(self.leaves)}
        # leaf_to_class[r][j]: class index at rank r of leaf j, -1 if unknown
        n_ranks = len(self.rank_names)
        m = np.full((n_ranks, len(self.leaves)), -1, dtype=np.int64)
        for j, leaf in enumerate(self.leaves):
            labels = leaf.split(";")
            for r in range(min(len(labels), n_ranks)):
                m[r, j] = self.index[r][";".join(labels[:r + 1])]
        self.leaf_to_class = m

    @classmethod
    def fit(cls, lineages: Sequence[Tuple[str, ...]], n_ranks: int,
            rank_names: Sequence[str] = None) -> "LabelEncoder":
        if rank_names is None:
            rank_names = (RANKS if n_ranks == len(RANKS) else
                          [f"rank{i + 1}" for i in range(n_ranks)])
        classes = [sorted({";".join(lin[:r + 1]) for lin in lineages
                           if len(lin) > r}) for r in range(n_ranks)]
        # leaves sorted by their label tuples: the tree order of
        # walk.LeafTree (the leaves below a taxon contiguous, those ending
        # at it first), so the walk needs no gather into that order.
        # Sorting the joined strings agrees except where a label is a
        # prefix of a sibling's followed by a character below ';'
        # ("g__A" vs "g__A-1"); none of the shared references has one.
        leaves = [";".join(lin) for lin in sorted({tuple(lin)
                                                    for lin in lineages
                                                    if lin})]
        return cls(rank_names, classes, leaves)

    @property
    def n_classes(self) -> List[int]:
        return [len(c) for c in self.classes]

    def encode(self, lineages: Sequence[Tuple[str, ...]]
               ) -> Tuple[np.ndarray, np.ndarray]:
        """Return (rank targets (n, n_ranks) with -1 = unknown, leaf ids)."""
        n_ranks = len(self.rank_names)
        y = np.full((len(lineages), n_ranks), -1, dtype=np.int64)
        leaf = np.full(len(lineages), -1, dtype=np.int64)
        for i, lin in enumerate(lineages):
            for r in range(min(len(lin), n_ranks)):
                y[i, r] = self.index[r].get(";".join(lin[:r + 1]), -1)
            if lin:
                leaf[i] = self.leaf_index.get(";".join(lin), -1)
        return y, leaf

    def to_dict(self) -> dict:
        return {"rank_names": self.rank_names, "classes": self.classes,
                "leaves": self.leaves}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelEncoder":
        for key in ("rank_names", "classes", "leaves"):
            if key not in d:
                raise ValueError(f"labels.json lacks the key {key!r}.")
        if len(d["classes"]) != len(d["rank_names"]):
            raise ValueError("labels.json: 'classes' and 'rank_names' "
                             "differ in length.")
        return cls(d["rank_names"], d["classes"], d["leaves"])


def find_conflicts(lineages: Sequence[Tuple[str, ...]], max_report: int = 5
                   ) -> List[str]:
    """Names that occur under more than one parent lineage (e.g. a genus
    placed in two families). Returns human-readable descriptions."""
    parents = defaultdict(set)
    for lin in lineages:
        for r in range(1, len(lin)):
            parents[(r, lin[r])].add(";".join(lin[:r]))
    out = []
    for (r, name), ps in sorted(parents.items()):
        if len(ps) > 1:
            out.append(f"{name} under {len(ps)} parents: "
                       + " | ".join(sorted(ps)[:3]))
    return out[:max_report] if max_report else out


def warn_conflicts(lineages: Sequence[Tuple[str, ...]]) -> None:
    conflicts = find_conflicts(lineages, max_report=0)
    if conflicts:
        warnings.warn(
            f"{len(conflicts)} taxa occur under more than one parent lineage "
            "and are kept as separate classes, e.g. " + "; ".join(conflicts[:3])
            + ". Reconcile the reference taxonomy if this is not intended.",
            UserWarning, stacklevel=2)
