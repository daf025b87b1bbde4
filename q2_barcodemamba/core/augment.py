"""Sequence augmentation for the long tail of sparse references.

A species with one or two reference reads gives the network one or two
examples; a new haplotype of it differs from them by a few substitutions
and small indels, and a read from a different run starts and ends a few
bases earlier or later. Each training read is therefore, with probability
``p``, replaced in each epoch by a variant: its ends cropped by up to
``crop`` of its length, then substitutions at rate ``substitution`` and
single-base insertions and deletions at rate ``indel`` per base (rates of
the order seen between haplotypes of one fungal species, ~0.5-2 % ITS
divergence; Nilsson et al. 2008, Evol. Bioinform. 4:193). Variants never
fall below ``min_length`` bases. Everything is drawn from a
``numpy.random.Generator``, so a seed fixes the variants.
"""
from dataclasses import asdict, dataclass
from typing import List, Sequence

import numpy as np

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass
class AugmentConfig:
    p: float = 0.5              # share of training reads varied per epoch
    substitution: float = 0.01  # per-base substitution rate
    indel: float = 0.003        # per-base rate of insertions and of deletions
    crop: float = 0.05          # most of the read's length cut at each end
    min_length: int = 20        # variants are never shorter than this (bp)

    def validate(self) -> "AugmentConfig":
        for name in ("p", "substitution", "indel", "crop"):
            v = getattr(self, name)
            if not 0.0 <= v <= (0.5 if name != "p" else 1.0):
                raise ValueError(f"augmentation {name} must be in [0, "
                                 f"{0.5 if name != 'p' else 1}], not {v}.")
        if self.min_length < 1:
            raise ValueError("augmentation min_length must be >= 1.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self.p > 0 and (self.substitution > 0 or self.indel > 0
                               or self.crop > 0)


def vary(seq: str, rng: np.random.Generator, cfg: AugmentConfig) -> str:
    """One variant of ``seq`` (cleaned, ACGTN) as described above; reads
    at or below ``min_length`` are returned unchanged."""
    n = len(seq)
    if n <= cfg.min_length:
        return seq
    a = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    if cfg.crop > 0:
        spare = n - cfg.min_length
        cut = rng.integers(0, int(cfg.crop * n) + 1, size=2)
        left = int(min(cut[0], spare))
        right = int(min(cut[1], spare - left))
        a = a[left:n - right]
    if cfg.substitution > 0:
        hit = rng.random(len(a)) < cfg.substitution
        if hit.any():
            a = a.copy()
            # a different base: shift the base's index by 1..3 (N -> a base)
            idx = np.searchsorted(_BASES, a[hit]).clip(max=3)
            a[hit] = _BASES[(idx + rng.integers(1, 4, hit.sum())) % 4]
    if cfg.indel > 0:
        dele = rng.random(len(a)) < cfg.indel
        if len(a) - dele.sum() < cfg.min_length:
            dele[:] = False
        ins = rng.random(len(a)) < cfg.indel
        if dele.any() or ins.any():
            new = _BASES[rng.integers(0, 4, ins.sum())]
            keep = a[~dele]
            # insert after the kept base at each insertion site
            pos = np.cumsum(~dele)[ins]
            a = np.insert(keep, pos, new)
    return a.tobytes().decode("ascii")


def augment_batch(seqs: Sequence[str], seed: int, cfg: AugmentConfig
                  ) -> List[str]:
    """Each read of the batch varied with probability ``cfg.p``; the
    result depends only on ``seed`` and the reads."""
    if not cfg.active:
        return list(seqs)
    rng = np.random.default_rng(seed)
    pick = rng.random(len(seqs)) < cfg.p
    return [vary(s, rng, cfg) if k else s for s, k in zip(seqs, pick)]


def noisy_copies(seqs: Sequence[str], max_rate: float, min_length: int,
                 seed: int) -> List[str]:
    """One copy of each read with sequencing errors at a per-base rate
    drawn uniformly from [0, ``max_rate``] (half substitutions, a quarter
    insertions, a quarter deletions; no cropping): what long-read
    platforms (1-5 % errors) produce. Empty when ``max_rate`` is 0."""
    if max_rate <= 0:
        return []
    rng = np.random.default_rng([seed, 5])
    return [with_errors(s, float(rng.random()) * max_rate, rng, min_length)
            for s in seqs]


def with_errors(seq: str, rate: float, rng: np.random.Generator,
                min_length: int) -> str:
    """``seq`` with sequencing errors at per-base ``rate``: half
    substitutions, a quarter insertions, a quarter deletions."""
    cfg = AugmentConfig(p=1.0, substitution=rate / 2, indel=rate / 4,
                        crop=0.0, min_length=min_length)
    return vary(seq, rng, cfg)
