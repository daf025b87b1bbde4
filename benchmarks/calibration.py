"""Per-rank calls and confidences of the fitted NB and BarcodeMamba+
classifiers, for calibration error and confidence-threshold curves.

``classify`` reports one confidence per read (at the reported rank); to
score every rank and every threshold from one pass, the fitted ``.qza``
models are loaded here through the QIIME 2 Artifact API and their
probabilities summed up the taxonomy exactly as the actions do:
classify-sklearn follows the most probable reference lineage and sums
class probabilities sharing each prefix (``q2_feature_classifier._skl.
_predict_chunk_with_conf``); barcodemamba walks the tree top-down
(``q2_barcodemamba.core.inference.hierarchical_walk``). Calls truncated at
each action's default threshold are compared with the CLI output
(``cli_agreement``) to show the two agree.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from q2_barcodemamba.core.taxonomy import known_depth, split_lineage

RankCalls = Tuple[List[List[Optional[str]]], np.ndarray]


def naive_bayes_rank_calls(qza: str, seqs: Sequence[str],
                           n_ranks: int = 7, chunk: int = 500) -> RankCalls:
    """(labels[i][r], conf (n, R)) of a fitted classify-sklearn pipeline."""
    import qiime2
    from scipy import sparse
    from sklearn.pipeline import Pipeline
    pipe = qiime2.Artifact.load(qza).view(Pipeline)
    split = [split_lineage(c) for c in pipe.classes_]
    n_cls = len(split)
    members, names = [], []
    for r in range(n_ranks):
        prefixes = [";".join(s[:r + 1]) if known_depth(s) > r else None
                    for s in split]
        uniq = {p: j for j, p in enumerate(sorted(set(prefixes) - {None}))}
        rows = [k for k, p in enumerate(prefixes) if p is not None]
        col = np.array([uniq[prefixes[k]] for k in rows], dtype=np.int64)
        members.append((np.array([uniq.get(p, -1) if p else -1
                                  for p in prefixes]),
                        sparse.csr_matrix((np.ones(len(rows)), (rows, col)),
                                          shape=(n_cls, len(uniq)))))
        names.append(prefixes)
    labels, conf = [], np.zeros((len(seqs), n_ranks))
    for start in range(0, len(seqs), chunk):
        probs = pipe.predict_proba(list(seqs[start:start + chunk]))
        top = probs.argmax(axis=1)
        for r, (pid, onehot) in enumerate(members):
            mass = np.asarray(onehot.T @ probs.T).T          # (b, n_prefix)
            p = pid[top]
            conf[start:start + len(top), r] = np.where(
                p >= 0, mass[np.arange(len(top)), np.maximum(p, 0)], 0.0)
        for t in top:
            labels.append([names[r][t] for r in range(n_ranks)])
    return labels, conf


def barcodemamba_rank_calls(qza: str, seqs: Sequence[str]
                            ) -> Tuple[List[List[Optional[str]]], np.ndarray,
                                       float]:
    """(labels, conf (n, R), the classifier's 'auto' threshold)."""
    import qiime2
    from q2_barcodemamba.core.classifier import TaxonomicClassifier
    clf = qiime2.Artifact.load(qza).view(TaxonomicClassifier)
    chosen, conf = clf.predict_ranks(list(seqs))
    labels = [[clf.labels.classes[r][c] if c >= 0 else None
               for r, c in enumerate(row)] for row in chosen]
    auto = float(clf.calibration.get("best_confidence", 0.7))
    return labels, conf.astype(float), auto


def best_threshold(curve: dict, prefer: float = 0.7) -> float:
    """Threshold with the highest right-call rate (ties: closest to
    ``prefer``)."""
    rates = np.array(curve["right_call"])
    ts = np.array(curve["thresholds"])
    best = np.flatnonzero(rates >= rates.max() - 1e-9)
    return float(ts[best[np.argmin(np.abs(ts[best] - prefer))]])
