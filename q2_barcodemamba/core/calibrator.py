"""Learned abstention: the probability that a call at a rank is right.

For every read and rank the classifier has a candidate taxon (from the
top-down walk over the lineage probabilities) and a few signals of how
much to trust it: the summed probability of that taxon, how similar the
nearest reference read of that taxon is to the query, how far ahead
it is of the nearest reference read of any other taxon at that rank (the
margin) and how many reference reads the taxon has. A
:class:`RankCalibrator` maps these signals, per rank, to the
probability that the call at that rank is right, by logistic regression
fitted on the classifier's own validation split: held-out haplotypes of
reference species (a species call is right), held-out species (only the
genus can be right) and held-out genera (only the family can be right).
The reported ``Confidence`` is that probability, so ``--p-confidence
0.9`` means "keep the ranks where at least 90 % of such calls were right
on validation".

This is the idea behind per-clade similarity cut-offs for barcodes
(dnabarcoder, Vu et al. 2022) and behind classifiers that learn when to
stop descending the taxonomy (IDTAXA, Murali et al. 2018), written here as
a calibrated model: every signal enters with a non-negative weight (more
evidence never lowers the confidence), and the confidence never rises from
one rank to the next deeper one.
"""
from typing import Dict, Optional, Sequence

import numpy as np

# Evidence signals, per read and rank, all "larger is more trustworthy".
FEATURES = ("mass", "net_mass", "emb_top", "emb_margin", "kmer_top",
            "kmer_margin", "ref_reads")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


class RankCalibrator:
    """Per-rank logistic calibrator with non-negative feature weights.

    ``features``: names of the columns of ``X``; ``mean``/``std`` (F,)
    standardise them; ``weight`` (R, F) >= 0 and ``bias`` (R,).
    Probability features (names ending in ``mass``) enter as logits.
    """

    def __init__(self, features: Sequence[str], mean, std, weight, bias):
        self.features = list(features)
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(
                f"calibrator: unknown evidence {unknown} (this version "
                f"knows {', '.join(FEATURES)}); was the classifier written "
                "by a newer q2-barcodemamba? Upgrade, or fit it again.")
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = np.asarray(bias, dtype=np.float64)
        F = len(self.features)
        if self.mean.shape != (F,) or self.std.shape != (F,) \
                or self.weight.ndim != 2 or self.weight.shape[1] != F \
                or self.bias.shape != (self.weight.shape[0],):
            raise ValueError("calibrator: features, mean, std, weight and "
                             "bias disagree in shape.")
        if (self.weight < 0).any() or not np.isfinite(self.weight).all():
            raise ValueError("calibrator weights must be finite and >= 0.")
        if (self.std <= 0).any():
            raise ValueError("calibrator feature scales must be > 0.")

    @property
    def n_ranks(self) -> int:
        return self.weight.shape[0]

    def _design(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).copy()
        for f, name in enumerate(self.features):
            if name.endswith("mass"):
                X[..., f] = _logit(X[..., f])
        return (X - self.mean) / self.std

    def confidence(self, X: np.ndarray, monotone_ranks: bool = True
                   ) -> np.ndarray:
        """P(call right) (n, R) for features ``X`` (n, R, F); with
        ``monotone_ranks`` each rank's value is capped by the one above."""
        Z = self._design(X)
        logits = (Z * self.weight[None]).sum(-1) + self.bias[None]
        conf = 1.0 / (1.0 + np.exp(-logits))
        if monotone_ranks:
            conf = np.minimum.accumulate(conf, axis=1)
        return conf

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, features: Sequence[str],
            valid: Optional[np.ndarray] = None, l2: float = 1e-2,
            weight: Optional[np.ndarray] = None) -> "RankCalibrator":
        """Fit on features ``X`` (n, R, F) and rightness ``y`` (n, R) bool;
        ``valid`` (n, R) marks the entries that count (a rank where the
        walk made no call has nothing to calibrate); ``weight`` (n,) > 0
        weighs the items (None: all 1). One pseudo-right and one
        pseudo-wrong call per rank at the mean features keep ranks that
        were always right (or wrong) on validation finite."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n, R, F = X.shape
        if valid is None:
            valid = np.ones((n, R), dtype=bool)
        w = _weights(weight, n)
        Z = cls(features, np.zeros(F), np.ones(F), np.zeros((R, F)),
                np.zeros(R))._design(X)
        wv = np.broadcast_to(w[:, None], (n, R))
        flat, fw = ((Z[valid], wv[valid]) if valid.any() and w[
            valid.any(1)].sum() > 0 else (Z.reshape(-1, F), np.ones(n * R)))
        mean = np.average(flat, axis=0, weights=fw)
        std = np.sqrt(np.average((flat - mean) ** 2, axis=0, weights=fw))
        std = np.where(std > 1e-9, std, 1.0)
        Z = (Z - mean) / std
        weight, bias = np.zeros((R, F)), np.zeros(R)
        for r in range(R):
            keep = valid[:, r]
            # pseudo-counts at the mean (Z = 0): one right, one wrong
            Zr = np.concatenate([Z[keep, r], np.zeros((2, F))])
            yr = np.concatenate([y[keep, r], [1.0, 0.0]])
            sr = np.concatenate([w[keep], [1.0, 1.0]])
            weight[r], bias[r] = _nonneg_logistic(Zr, yr, l2, sr)
        return cls(features, mean, std, weight, bias)

    def to_dict(self) -> dict:
        return {"features": self.features, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "weight": self.weight.tolist(),
                "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, d: Dict) -> "RankCalibrator":
        try:
            return cls(d["features"], d["mean"], d["std"], d["weight"],
                       d["bias"])
        except KeyError as exc:
            raise ValueError(f"calibrator lacks {exc.args[0]!r}.") from None


def _weights(weight: Optional[np.ndarray], n: int) -> np.ndarray:
    """Checked item weights (all 1 for None): a weight of 2 counts as the
    item listed twice."""
    if weight is None:
        return np.ones(n)
    w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be {n} finite values >= 0.")
    return w


def _logistic_newton(Z: np.ndarray, y: np.ndarray, l2: float,
                     iters: int = 50, s: Optional[np.ndarray] = None
                     ) -> np.ndarray:
    """Ridge-penalised logistic regression by Newton's method, items
    weighted by ``s`` (None: 1); returns (bias, *weights). The bias is not
    penalised."""
    s = np.ones(len(Z)) if s is None else s
    A = np.concatenate([np.ones((len(Z), 1)), Z], 1)
    beta = np.zeros(A.shape[1])
    pen = np.full(A.shape[1], l2 * s.sum())
    pen[0] = 1e-8
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ beta, -30, 30)))
        grad = A.T @ (s * (p - y)) + pen * beta
        H = (A * (s * p * (1 - p))[:, None]).T @ A + np.diag(pen)
        step = np.linalg.solve(H, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _nonneg_logistic(Z: np.ndarray, y: np.ndarray, l2: float,
                     s: Optional[np.ndarray] = None):
    """Logistic regression with weights >= 0 (active set: the most negative
    weight is fixed at 0 and the rest refitted until none is negative);
    ``s``: item weights."""
    active = list(range(Z.shape[1]))
    while True:
        beta = _logistic_newton(Z[:, active], y, l2, s=s)
        w = beta[1:]
        if not active or (w >= 0).all():
            out = np.zeros(Z.shape[1])
            out[active] = np.maximum(w, 0.0)
            return out, float(beta[0])
        active.pop(int(np.argmin(w)))


def group_folds(groups: Sequence[str], n_folds: int, seed: int = 0
                ) -> np.ndarray:
    """Fold index per item; items of one group share a fold."""
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {uniq[i]: k % n_folds for k, i in enumerate(order)}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


def out_of_fold(X: np.ndarray, y: np.ndarray, valid: np.ndarray,
                features: Sequence[str], folds: np.ndarray,
                weight: Optional[np.ndarray] = None) -> np.ndarray:
    """Confidences of every item from a calibrator fitted without its fold
    (for choosing a threshold without fitting and scoring on one set);
    ``weight``: item weights of the fits."""
    out = np.zeros(y.shape, dtype=np.float64)
    w = _weights(weight, len(y))
    for f in np.unique(folds):
        test = folds == f
        if test.all():
            return RankCalibrator.fit(X, y, features, valid,
                                      weight=w).confidence(X)
        cal = RankCalibrator.fit(X[~test], y[~test], features, valid[~test],
                                 weight=w[~test])
        out[test] = cal.confidence(X[test])
    return out

