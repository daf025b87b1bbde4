"""Configuration dataclasses for BarcodeMamba+ models and training.

The one place of every default: the QIIME 2 actions (``_methods.py``), the
command line (:mod:`.cli`) and the parameter descriptions read them from
here. Presets follow the model sizes of BarcodeMamba+ (arXiv 2512.15931);
``tiny`` is our CPU default and is not from the paper.
"""
from dataclasses import asdict, dataclass, field, fields
from typing import Optional

ABSTENTION = ("learned", "summed", "auto")   # TrainConfig.abstention
PRECISIONS = ("fp32", "bf16")   # network arithmetic: float32 | bfloat16 autocast

SCRATCH_LR = 3e-3   # measured best of {1e-3, 3e-3, 1e-2} from random weights
FINETUNE_LR = 1e-3  # from a pretrained backbone; see docs/ablation.md
DEFAULT_PRESET = "tiny"  # the size with a shipped pretrained backbone
VOCAB_SIZE = 1024   # BPE vocabulary incl. special tokens
MIN_READ_LENGTH = 20  # bp; shorter reference reads are refused, shorter
                      # query reads reported Unassigned


@dataclass
class ModelConfig:
    vocab_size: int = VOCAB_SIZE  # set from the tokenizer (incl. specials)
    d_model: int = 128         # residual stream width
    n_layers: int = 2          # residual blocks (mixer + MLP each)
    d_state: int = 32          # SSM state size N per head
    d_conv: int = 4            # causal depthwise conv width (Mamba-2 default)
    expand: int = 2            # d_inner = expand * d_model
    headdim: int = 32          # SSM head dim P; nheads = d_inner // headdim
    ngroups: int = 1           # groups sharing B and C (Mamba-2 "ngroups")
    chunk_size: int = 32       # SSD chunk length; same maths for any value, 32 is fastest on CPU for ITS lengths
    d_intermediate: int = 256  # gated-MLP hidden size; 0 disables the MLP sublayer
    norm_eps: float = 1e-5
    dropout: float = 0.1       # on the pooled embedding before the heads

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    def validate(self) -> "ModelConfig":
        if self.d_inner % self.headdim:
            raise ValueError(
                f"expand*d_model ({self.d_inner}) must be divisible by headdim "
                f"({self.headdim}).")
        if self.nheads % self.ngroups:
            raise ValueError(
                f"nheads ({self.nheads}) must be divisible by ngroups "
                f"({self.ngroups}).")
        for f in ("vocab_size", "d_model", "n_layers", "d_state", "d_conv",
                  "headdim", "chunk_size"):
            if getattr(self, f) < 1:
                raise ValueError(f"ModelConfig.{f} must be >= 1, got "
                                 f"{getattr(self, f)}.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown ModelConfig keys {unknown}; the "
                             "classifier was written by a newer version.")
        return cls(**d).validate()


# Named presets. ``paper-*`` sizes follow the BarcodeMamba+ paper.
PRESETS = {
    "tiny": dict(d_model=128, n_layers=2, d_state=32, headdim=32, expand=2,
                 d_intermediate=256),
    "small": dict(d_model=256, n_layers=4, d_state=64, headdim=32, expand=2,
                  d_intermediate=512),
    # d_intermediate 3072 in both paper sizes: with a tied 8192-token
    # vocabulary and no heads this gives 12.1M / 49.3M parameters, the
    # paper's 12.1M / 49.2M (q2_barcodemamba/tests/test_pretrain.py::
    # test_paper_sizes)
    "paper-12m": dict(d_model=384, n_layers=2, d_state=64, headdim=48,
                      expand=2, d_intermediate=3072),
    "paper-50m": dict(d_model=768, n_layers=4, d_state=64, headdim=48,
                      expand=2, d_intermediate=3072),
}


def preset(name: str, **overrides) -> ModelConfig:
    """Return the ModelConfig of a named preset, with keyword overrides."""
    if name not in PRESETS:
        raise ValueError(f"Unknown model preset {name!r}; choose one of "
                         f"{sorted(PRESETS)}.")
    return ModelConfig(**{**PRESETS[name], **overrides}).validate()


@dataclass
class TrainConfig:
    epochs: int = 20             # upper bound; early stopping usually ends sooner
    batch_size: int = 32         # sequences per optimisation step (32 learnt
                                 # faster per epoch than 64 on ITS)
    learning_rate: Optional[float] = None  # peak AdamW lr after warm-up;
                                 # None = SCRATCH_LR from random weights,
                                 # FINETUNE_LR from a pretrained backbone
    weight_decay: float = 0.05   # only on >=2-D weights (nanoGPT habit)
    warmup_fraction: float = 0.05  # share of steps spent in linear warm-up
    grad_clip: float = 1.0       # max global grad norm
    label_smoothing: float = 0.05  # flat smoothing (used when hls_epsilon == 0)
    hls_epsilon: float = 0.0     # hierarchical label smoothing mass per
                                 # ancestor rank (MycoAI/BarcodeMamba+: 0.02)
    class_weight_power: float = 0.0  # w_c ~ n_c^-power; 0.5 = inverse sqrt
    validation_fraction: float = 0.1  # share of sequence groups held out
    patience: int = 3            # epochs without a gain of the selection
                                 # score before stopping
    select: str = "right_call"   # epoch selection on validation: right_call
                                 # (share of right calls of the whole
                                 # classifier) | val_loss
    unseen_genus_fraction: float = 0.03  # share of reads held out for
                                 # validation as whole genera (their family
                                 # stays), so abstention learns that case
    refit: bool = False          # retrain on all reads for the best epoch
                                 # count (the calibration then comes from
                                 # the first network, not the shipped one)
    memory: bool = True          # reference memory: every read with its
                                 # embedding; neighbours vote
    kmer_similarity: bool = True  # neighbours by k-mer Jaccard index too
    abstention: str = "auto"     # learned: per-rank calibrator gives the
                                 # confidence | summed: summed probability
                                 # | auto: the one with more validation
                                 # right calls (docs/accuracy.md)
    contrastive_weight: float = 0.5  # supervised contrastive term (species,
                                 # half weight genus) beside the heads
    contrastive_temperature: float = 0.1
    augment: float = 0.0         # share of training reads replaced by a
                                 # variant per epoch (core/augment.py)
    region_cutouts: bool = True  # ITS1/ITS2 amplicons of each reference
                                 # read in the memory and in validation
                                 # (core/regions.py)
    region_augment: float = 0.5  # share of training reads replaced by one
                                 # of their amplicons per epoch
    validation_errors: float = 0.0  # most per-base error rate of a copy
                                 # of each validation read asked beside it
                                 # (0 = none; core/augment.noisy_copies)
    query_region: str = "any"    # any | a region (ITS1, ITS2) or primer
                                 # pair the queries come from: the
                                 # reference is cut to that amplicon
    heads: str = "multi"         # multi: one head per rank + leaf head;
                                 # single: leaf head only
    max_length: int = 512        # tokens kept per read (longer reads cropped)
    random_seed: int = 0
    device: str = "auto"         # auto | cpu | cuda
    n_threads: int = 0           # torch CPU threads; 0 = torch default
    precision: str = "fp32"      # fp32 | bf16: forward passes and losses
                                 # of training under bfloat16 autocast
                                 # (for GPUs; weights and optimiser stay
                                 # float32)
    min_length: int = MIN_READ_LENGTH  # shortest reference read (bp) accepted
    vocab_size: int = VOCAB_SIZE  # BPE vocabulary size to train
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "TrainConfig":
        if self.select not in ("right_call", "val_loss"):
            raise ValueError(f"select must be 'right_call' or 'val_loss', "
                             f"not {self.select!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, "
                             f"not {self.precision!r}.")
        if self.abstention not in ABSTENTION:
            raise ValueError(f"abstention must be 'learned', 'summed' or "
                             f"'auto', not {self.abstention!r}.")
        for name in ("validation_fraction", "unseen_genus_fraction",
                     "augment", "region_augment"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not "
                                 f"{getattr(self, name)}.")
        if not 0.0 <= self.validation_errors <= 0.2:
            raise ValueError(f"validation_errors must be in [0, 0.2], not "
                             f"{self.validation_errors}.")
        if self.contrastive_weight < 0 or self.contrastive_temperature <= 0:
            raise ValueError("contrastive_weight must be >= 0 and "
                             "contrastive_temperature > 0.")
        if self.query_region.lower() != "any":
            from .primers import parse_region
            parse_region(self.query_region)     # a clear error if unknown
        return self


@dataclass
class PretrainConfig:
    epochs: int = 15              # paper: 15 epochs
    batch_size: int = 64          # sequences per step, over all processes
    learning_rate: float = 8e-4   # paper: 8e-4 (AdamW, warm-up + cosine)
    weight_decay: float = 0.1
    warmup_fraction: float = 0.02
    grad_clip: float = 1.0
    max_length: int = 512         # tokens kept per sequence (5' end)
    vocab_size: int = VOCAB_SIZE  # BPE vocabulary incl. special tokens
    validation_fraction: float = 0.02  # random sequences held out for val loss
    random_seed: int = 0
    device: str = "auto"
    n_threads: int = 0
    log_every: int = 200          # steps between progress lines
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
