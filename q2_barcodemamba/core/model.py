"""BarcodeMamba+ network: a small Mamba-2 backbone with per-rank heads.

One readable file in the spirit of nanoGPT. The mixer follows Mamba-2 (Dao &
Gu 2024, Transformers are SSMs (Mamba-2), arXiv 2405.21060); its parameter
names and shapes match ``mamba_ssm.modules.mamba2.Mamba2`` so that the fused
CUDA kernels, when installed, run on the very same state_dict. Without them
(CPU, or no kernels) the pure PyTorch SSD scan of :mod:`.ssd` is used.

Letters in shape comments: B batch, L length, D d_model, E d_inner,
h heads, p head dim, g groups, n state size.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import kernels
from .config import ModelConfig
from .ssd import ssd_scan_chunked


class RMSNormGated(nn.Module):
    """y = rmsnorm(x * silu(z)) * weight, normalised per group of channels.

    This is Mamba-2's gated RMSNorm with ``norm_before_gate=False``; with
    ``group_size == d`` it is an ordinary RMSNorm over all channels.
    """

    def __init__(self, d: int, eps: float = 1e-5, group_size: int = None):
        super().__init__()
        self.eps = eps
        self.group_size = d if group_size is None else group_size
        if d % self.group_size:
            raise ValueError(f"d ({d}) must be divisible by group_size "
                             f"({self.group_size})")
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x, z=None):
        h = x.float()                                         # (..., d)
        if z is not None:
            h = h * F.silu(z.float())                         # (..., d)
        hg = h.unflatten(-1, (-1, self.group_size))           # (..., groups, group_size)
        hg = hg * torch.rsqrt(hg.pow(2).mean(-1, keepdim=True) + self.eps)
        y = hg.flatten(-2) * self.weight.float()              # (..., d)
        return y.to(x.dtype)


class Mamba2Mixer(nn.Module):
    """Mamba-2 mixer: in_proj -> causal conv -> SSD scan -> gated norm -> out_proj."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.d_model, self.d_state = cfg.d_model, cfg.d_state
        self.d_inner, self.nheads = cfg.d_inner, cfg.nheads
        self.headdim, self.ngroups = cfg.headdim, cfg.ngroups
        self.d_conv, self.chunk_size = cfg.d_conv, cfg.chunk_size
        self.conv_dim = self.d_inner + 2 * self.ngroups * self.d_state
        self.use_kernels = True  # use the CUDA kernels when on GPU and installed

        # Output order of in_proj: [z, x, B, C, dt]; x, B, C go through the conv.
        d_in_proj = 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads
        self.in_proj = nn.Linear(self.d_model, d_in_proj, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, cfg.d_conv,
                                groups=self.conv_dim, padding=cfg.d_conv - 1,
                                bias=True)

        # dt ~ log-uniform[1e-3, 1e-1] floored at 1e-4; dt_bias = softplus^-1(dt).
        dt = torch.exp(torch.rand(self.nheads) * (math.log(1e-1) - math.log(1e-3))
                       + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True

        self.norm = RMSNormGated(self.d_inner, eps=cfg.norm_eps,
                                 group_size=self.d_inner // self.ngroups)
        self.out_proj = nn.Linear(self.d_inner, self.d_model, bias=False)

    def forward(self, u):
        Bsz, L, _ = u.shape                                   # u: (B, L, D)
        h, p, g, n = self.nheads, self.headdim, self.ngroups, self.d_state
        # z and the rest as two products over row blocks of in_proj's
        # weight: each output is contiguous (elementwise ops on a split
        # view of one product ran 2-4x slower on a CPU)
        W, E = self.in_proj.weight, self.d_inner
        z = F.linear(u, W[:E])                                # (B, L, E)
        xBC, dt = torch.split(F.linear(u, W[E:]),
                              [self.conv_dim, self.nheads], dim=-1)
        A = -torch.exp(self.A_log.float())                    # (h,)
        dt = F.softplus(dt.float() + self.dt_bias.float())    # (B, L, h)

        k = None
        if u.is_cuda and self.use_kernels:
            k = kernels.mamba_kernels()
        if k is not None and k.causal_conv1d_fn is not None:
            # same call as mamba_ssm's Mamba2 (channel-last view)
            xBC = k.causal_conv1d_fn(
                xBC.transpose(1, 2), self.conv1d.weight.squeeze(1),
                self.conv1d.bias, activation="silu").transpose(1, 2)  # (B, L, E + 2gn)
        else:
            xBC = self.conv1d(xBC.transpose(1, 2))[..., :L]   # (B, E + 2gn, L) causal
            xBC = F.silu(xBC).transpose(1, 2)                 # (B, L, E + 2gn)
        x, B, C = torch.split(xBC, [self.d_inner, g * n, g * n], dim=-1)
        x = x.unflatten(-1, (h, p))                           # (B, L, h, p)
        B = B.unflatten(-1, (g, n))                           # (B, L, g, n)
        C = C.unflatten(-1, (g, n))                           # (B, L, g, n)

        if k is not None and k.mamba_chunk_scan_combined is not None:
            y = k.mamba_chunk_scan_combined(
                x, dt, A, B, C, self.chunk_size, D=self.D, z=None,
                dt_bias=None, dt_softplus=False)              # (B, L, h, p)
        else:
            y = ssd_scan_chunked(x, dt, A, B, C, self.chunk_size, D=self.D)  # (B, L, h, p)
        y = self.norm(y.reshape(Bsz, L, self.d_inner), z)     # (B, L, E)
        return self.out_proj(y)                               # (B, L, D)


class GatedMLP(nn.Module):
    """fc1 -> (y, gate) -> y * silu(gate) -> fc2."""

    def __init__(self, d_model: int, d_intermediate: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 2 * d_intermediate, bias=False)
        self.fc2 = nn.Linear(d_intermediate, d_model, bias=False)

    def forward(self, x):
        # the two halves of fc1 as two products: contiguous outputs
        W, i = self.fc1.weight, self.fc2.in_features
        y, gate = F.linear(x, W[:i]), F.linear(x, W[i:])      # (B, L, I) each
        return self.fc2(y * F.silu(gate))                     # (B, L, D)


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm1(x)), then + mlp(norm2(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer = Mamba2Mixer(cfg)
        if cfg.d_intermediate > 0:
            self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
            self.mlp = GatedMLP(cfg.d_model, cfg.d_intermediate)
        else:
            self.norm2 = self.mlp = None

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))                     # (B, L, D)
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))                   # (B, L, D)
        return x


class Backbone(nn.Module):
    """Token embedding -> n_layers Blocks -> final LayerNorm.

    Token id 0 is padding. Padding must be on the right: the model is causal,
    so outputs at real positions never depend on later (padding) tokens.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_f = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(self, tokens):
        x = self.embedding(tokens)                            # (B, L, D)
        for layer in self.layers:
            x = layer(x)                                      # (B, L, D)
        return self.norm_f(x)                                 # (B, L, D)


def masked_mean(hidden, mask):
    """Mean of hidden (B, L, D) over positions where mask (B, L) is True."""
    m = mask.to(hidden.dtype).unsqueeze(-1)                   # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)      # (B, D)


def init_weights(net: nn.Module, n_layers: int) -> None:
    """GPT-2 style initialisation (nanoGPT habit): N(0, 0.02) for linear and
    embedding weights, zero biases, and the projections that write into the
    residual stream scaled by 1/sqrt(2 * n_layers). The Mamba-2 specific
    parameters (A_log, dt_bias, D, conv) keep their own initialisation."""
    for module in net.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
    for name, p in net.named_parameters():
        if name.endswith(("out_proj.weight", "fc2.weight")):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))


def param_groups(net: nn.Module, weight_decay: float):
    """AdamW groups: decay only >= 2-D weights not marked _no_weight_decay."""
    decay, no_decay, seen = [], [], set()
    for p in net.parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights once
            continue
        seen.add(id(p))
        if p.dim() >= 2 and not getattr(p, "_no_weight_decay", False):
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class BarcodeMambaLM(nn.Module):
    """Backbone + next-token head for pretraining on unlabelled barcodes.

    The output projection is tied to the token embedding (GPT-2 / Mamba LM
    habit; Press & Wolf 2017): it adds no parameters, so the backbone that
    fine-tuning inherits is exactly what was trained, and a tied head
    regularises the small vocabularies used for DNA.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.backbone = Backbone(cfg)
        init_weights(self, cfg.n_layers)

    def forward(self, tokens):
        """Next-token logits (B, L, V) for token ids (B, L)."""
        h = self.backbone(tokens)                              # (B, L, D)
        return F.linear(h, self.backbone.embedding.weight)     # (B, L, V)

    def param_groups(self, weight_decay: float):
        return param_groups(self, weight_decay)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class BarcodeMambaNet(nn.Module):
    """Backbone + masked mean pooling + dropout + linear classification heads.

    ``n_classes`` gives one head per entry. BarcodeMamba+ (multi-head) uses
    one head per rank plus our leaf head over whole reference lineages;
    single-head mode has only the leaf head, whose lineage gives the ranks
    above. Predictions always come from the last (leaf) head, so lineages are
    consistent in both modes.
    """

    def __init__(self, cfg: ModelConfig, n_classes):
        super().__init__()
        self.cfg = cfg.validate()
        self.n_classes = [int(c) for c in n_classes]
        self.backbone = Backbone(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleList(nn.Linear(cfg.d_model, c) for c in self.n_classes)
        init_weights(self, cfg.n_layers)

    def embed(self, tokens, mask=None):
        """Pooled embedding (B, D); mask defaults to ``tokens != 0``."""
        if mask is None:
            mask = tokens != 0
        return masked_mean(self.backbone(tokens), mask)       # (B, D)

    def forward(self, tokens, mask=None, with_embedding: bool = False):
        """List of logits, one (B, n_h) tensor per head; with
        ``with_embedding`` also the pooled embedding (B, D) before dropout
        (``(logits, z)``), e.g. for a contrastive term under DDP."""
        emb = self.embed(tokens, mask)                        # (B, D)
        z = self.dropout(emb)
        logits = [head(z) for head in self.heads]
        return (logits, emb) if with_embedding else logits

    def param_groups(self, weight_decay: float):
        return param_groups(self, weight_decay)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
