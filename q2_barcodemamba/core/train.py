"""Supervised training of a BarcodeMamba+ classifier (fine-tuning).

The network and its heads (:mod:`.heads`) are trained by the shared loop of
:mod:`.loop` (AdamW with decoupled weight decay, Loshchilov & Hutter 2019;
linear warm-up then cosine decay; global gradient clipping) on the loss of
:mod:`.losses`, with a leakage-free validation split (:mod:`.split`),
early stopping on validation loss with the best weights restored, and the
validation leaf logits returned for temperature scaling (Guo et al. 2017).
Progress goes to stderr; everything is seeded.
"""
from dataclasses import replace
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from . import distributed as ddp
from .config import FINETUNE_LR, SCRATCH_LR, ModelConfig, TrainConfig
from .data import length_batches
from .heads import head_index, head_names, head_sizes
from .loop import Schedule, StepLoss, epoch_batches, run_epochs
from .augment import AugmentConfig, augment_batch
from .regions import pick_alternatives
from .losses import MultiTaskLoss, supervised_contrastive
from .model import BarcodeMambaNet
from .runtime import (autocast, configure, log, main_only, pad_batch,
                      resolve_precision, seed_everything)

# A later epoch whose validation right-call rate is within this of the best
# is kept instead (one point: below the noise of a few hundred reads, and
# the later network has learnt more of the reference).
RIGHT_CALL_TOLERANCE = 0.01


@torch.no_grad()
def evaluate(net: BarcodeMambaNet, tokens: Sequence[Sequence[int]],
             targets: np.ndarray, batch_size: int, device,
             loss_fn: MultiTaskLoss) -> Tuple[float, np.ndarray, torch.Tensor]:
    """Validation loss, per-head accuracy (argmax) and pooled embeddings
    (n, D) on the CPU (leaf logits follow from them by the leaf head,
    :class:`.inference.HeadLogits`, without an (n, n_leaf) matrix)."""
    net.eval()
    total, n, correct, seen = 0.0, 0, None, None
    embeddings = []
    order = length_batches([len(t) for t in tokens], batch_size)
    inverse = np.empty(len(tokens), dtype=np.int64)
    pos = 0
    for b in order:
        tok, mask = pad_batch([tokens[i] for i in b], device)
        y = torch.as_tensor(targets[b], device=device)
        logits, z = net(tok, mask, with_embedding=True)
        total += loss_fn(logits, y).item() * len(b)
        n += len(b)
        pred = torch.stack([lg.argmax(-1) for lg in logits], 1)
        ok = ((pred == y) & (y >= 0)).sum(0).cpu().numpy()
        cnt = (y >= 0).sum(0).cpu().numpy()
        correct = ok if correct is None else correct + ok
        seen = cnt if seen is None else seen + cnt
        embeddings.append(z.float().cpu())
        inverse[b] = np.arange(pos, pos + len(b))
        pos += len(b)
    acc = correct / np.maximum(seen, 1)
    return total / max(n, 1), acc, torch.cat(embeddings)[inverse]


def load_start(net: BarcodeMambaNet, init_state: dict) -> None:
    """Load starting weights (e.g. a pretrained backbone's) non-strictly
    over the fresh initialisation; every backbone weight must fit."""
    missing, unexpected = net.load_state_dict(init_state, strict=False)
    if unexpected or any(k.startswith("backbone.") for k in missing):
        raise ValueError(f"The starting weights do not fit this model "
                         f"(unexpected {unexpected[:3]}, missing "
                         f"{[k for k in missing if 'backbone.' in k][:3]}).")


def classification_step(dnet, loss_fn: MultiTaskLoss,
                        tokens: Sequence[Sequence[int]], y: np.ndarray,
                        device, contrast: Optional["Contrast"] = None,
                        variants: Optional[Callable[[list], list]] = None
                        ) -> Callable[[list, bool], StepLoss]:
    """The loop's batch -> loss function of the classification heads,
    plus the supervised contrastive term of ``contrast`` when given.
    ``variants(rows)``: token lists of augmented reads in place of
    ``tokens[rows]`` (:mod:`.augment`)."""
    def batch_loss(rows, dummy: bool) -> StepLoss:
        toks = variants(rows) if variants is not None and not dummy \
            else [tokens[i] for i in rows]
        tok, mask = pad_batch(toks, device)
        target = torch.as_tensor(y[rows], device=device)
        if dummy:   # no rows here: one masked row joins the all-reduce
            target = torch.full_like(target, -1)
        if contrast is None:
            loss = loss_fn(dnet(tok, mask), target)
        else:
            logits, z = dnet(tok, mask, with_embedding=True)
            loss = loss_fn(logits, target) + contrast(z, rows, dummy)
        n = 0 if dummy else len(rows)
        return StepLoss(loss, loss.item() * n if n else 0.0, n)
    return batch_loss


class Contrast:
    """The supervised contrastive term (:func:`.losses.
    supervised_contrastive`) of a batch: reads grouped by whole lineage
    (weight 1) and by genus (weight 1/2), scaled by ``weight``."""

    def __init__(self, y: np.ndarray, weight: float, temperature: float,
                 device):
        # y (n, R + 1): ranks then leaf; the leaf is the species-level group
        cols = [y.shape[1] - 1] + ([y.shape[1] - 3] if y.shape[1] > 2 else [])
        self.groups = torch.as_tensor(y[:, cols], device=device)
        self.levels = [1.0, 0.5][:len(cols)]
        self.weight, self.temperature = weight, temperature

    def __call__(self, z: torch.Tensor, rows, dummy: bool) -> torch.Tensor:
        g = self.groups[torch.as_tensor(rows, device=self.groups.device)]
        if dummy:
            g = torch.full_like(g, -1)
        return self.weight * supervised_contrastive(
            z, list(g.T), self.levels, self.temperature)


def variant_tokens(seqs: Sequence[str], tokenizer, max_length: int,
                   cfg: AugmentConfig, seed: int,
                   alternatives: Optional[Sequence[Sequence[str]]] = None,
                   region_p: float = 0.0) -> Callable[[list], list]:
    """``variants(rows)`` for :func:`classification_step`: the reads of
    ``rows``, each first replaced with probability ``region_p`` by one of
    its ``alternatives`` (its amplicons, :mod:`.regions`), then varied
    with probability ``cfg.p``; the n-th call draws from seed
    (``seed``, n), so a run is reproducible."""
    calls = [0]

    def variants(rows) -> list:
        calls[0] += 1
        call_seed = seed * 1_000_003 + calls[0]
        if alternatives is not None and region_p > 0:
            picked = pick_alternatives(rows, alternatives, seqs, region_p,
                                       np.random.default_rng([call_seed, 1]))
        else:
            picked = [seqs[i] for i in rows]
        varied = augment_batch(picked, call_seed, cfg)
        return tokenizer.encode(varied, max_length)
    return variants


def validation(net, tokens, y, batch_size: int, device, loss_fn,
               names: Sequence[str], score=None):
    """The loop's per-epoch evaluation (val_loss, val_accuracy per head,
    and the fields of ``score(net, val_embeddings)`` when given) and the
    matching progress text."""
    def run(epoch: int) -> dict:
        vl, acc, z = evaluate(net, tokens, y, batch_size, device, loss_fn)
        rec = {"val_loss": vl,
               "val_accuracy": {r: float(a) for r, a in zip(names, acc)}}
        if score is not None:
            rec.update(score(net, z))
        return rec

    def text(rec: dict) -> str:
        return (f" val_loss {rec['val_loss']:.4f} val_acc " + " ".join(
            f"{r[:3]} {a:.3f}" for r, a in rec["val_accuracy"].items())
            + (f" right calls {rec['right_call']:.3f}"
               if "right_call" in rec else ""))
    return run, text


def bf16_step(batch_loss, device: torch.device):
    """``batch_loss`` with its forward pass and loss under bfloat16
    autocast; the backward pass (in :func:`.loop.train_epoch`) runs outside
    it, as autocast asks. bfloat16 keeps float32's range, so no loss
    scaling is needed (Micikevicius et al. 2018 need it for float16)."""
    def step(rows, dummy: bool):
        with autocast(device, True):
            return batch_loss(rows, dummy)
    return step


def fit_network(cfg: ModelConfig, tcfg: TrainConfig, labels,
                train_tokens: Sequence[Sequence[int]], train_y: np.ndarray,
                val_tokens: Sequence[Sequence[int]], val_y: np.ndarray,
                progress: Callable[[str], None] = log,
                init_state: Optional[dict] = None,
                score: Optional[Callable[..., dict]] = None,
                variants: Optional[Callable[[list], list]] = None):
    """Train ``BarcodeMambaNet`` and return (net, history).

    ``labels``: the LabelEncoder (heads = its ranks + the leaf head, or the
    leaf head only when ``tcfg.heads == 'single'``).
    ``train_y``/``val_y``: (n, R + 1) class targets, -1 = unknown. With
    ``tcfg.contrastive_weight > 0`` a supervised contrastive term on the
    pooled embedding joins the loss (:class:`Contrast`).
    The returned net holds the weights of the best validation epoch: the
    highest ``score(net, val_embeddings)["right_call"]`` when ``score``
    is given and ``tcfg.select == 'right_call'``, else the lowest
    validation loss (the last epoch without validation data).
    ``init_state``: starting weights (e.g. a pretrained backbone's), loaded
    non-strictly over the fresh initialisation. ``variants``: see
    :func:`classification_step`.
    Under ``torchrun`` the batches are split over the processes
    (:mod:`.distributed`); every process returns the same network.
    """
    if tcfg.learning_rate is None:
        tcfg = replace(tcfg, learning_rate=FINETUNE_LR if init_state
                       is not None else SCRATCH_LR)
    device = ddp.setup(configure(tcfg.device, tcfg.n_threads))
    progress = main_only(progress)
    seed_everything(tcfg.random_seed)
    cols = head_index(labels, tcfg.heads)
    net = BarcodeMambaNet(cfg, head_sizes(labels, tcfg.heads)).to(device)
    loss_fn = MultiTaskLoss(tcfg, labels.classes, labels.leaf_to_class,
                            train_y, device, heads=cols)
    contrast = (Contrast(train_y, tcfg.contrastive_weight,
                         tcfg.contrastive_temperature, device)
                if tcfg.contrastive_weight > 0 else None)
    train_y, val_y = train_y[:, cols], val_y[:, cols]
    if init_state is not None:
        load_start(net, init_state)
        net.to(device)
    dnet = ddp.wrap(net, device)
    opt = torch.optim.AdamW(net.param_groups(tcfg.weight_decay),
                            lr=tcfg.learning_rate, betas=(0.9, 0.98))
    has_val = len(val_tokens) > 0
    evaluate_epoch, val_text = validation(
        net, val_tokens, val_y, tcfg.batch_size * 2, device, loss_fn,
        head_names(labels, tcfg.heads), score)
    select = None
    if has_val:
        select = ("right_call" if score is not None
                  and tcfg.select == "right_call" else "val_loss")

    def report(rec: dict) -> None:
        progress(f"epoch {rec['epoch']}/{tcfg.epochs} loss "
                 f"{rec['train_loss']:.4f} {rec['seq_per_s']:.0f} seq/s"
                 + (val_text(rec) if has_val else ""))

    progress(f"training {net.num_parameters():,} parameters on "
             f"{len(train_tokens)} reads ({len(val_tokens)} for validation), "
             f"device {device}, {torch.get_num_threads()} threads")
    step = classification_step(dnet, loss_fn, train_tokens, train_y,
                               device, contrast, variants)
    if resolve_precision(tcfg.precision, device):
        step = bf16_step(step, device)
        progress("training under bfloat16 autocast (weights, gradients "
                 "and optimiser state float32)")
    history = run_epochs(
        net, opt, step,
        epoch_batches([len(t) for t in train_tokens], tcfg.batch_size,
                      tcfg.random_seed),
        Schedule.for_run(len(train_tokens), tcfg.batch_size, tcfg.epochs,
                         tcfg.learning_rate, tcfg.warmup_fraction),
        tcfg.grad_clip, range(1, tcfg.epochs + 1), device=device,
        evaluate=evaluate_epoch if has_val else None, select=select,
        maximize=select == "right_call", patience=tcfg.patience,
        tolerance=RIGHT_CALL_TOLERANCE if select == "right_call" else 0.0,
        report=report, progress=progress)
    net.eval()
    return net, history
