"""The one training loop of pretraining and fine-tuning.

A run is described by plain callables, no framework:

* ``batch_loss(rows, dummy) -> StepLoss``: the loss of this process's rows
  of one global batch. What the loss is (next-token cross-entropy, the
  per-rank heads, extra terms) lives entirely here.
* ``batches(epoch) -> list of global batches`` (lists of row indices).
* ``evaluate(epoch) -> dict`` (optional): record fields after each epoch,
  e.g. ``{"val_loss": ..., "val_accuracy": ...}``; with ``select`` naming
  one of them, the run keeps the weights of the epoch with the best value
  (lowest, or highest with ``maximize``) and stops after ``patience``
  epochs without a gain.
* ``report(record)`` (optional): progress line, checkpoint, ...
* ``on_step(epoch, i, n_batches, lr, step_loss)`` (optional): after each
  optimisation step, e.g. a progress line every n steps.

Optimisation: AdamW's learning rate follows :class:`Schedule` (linear
warm-up, then cosine decay; Loshchilov & Hutter 2017, 2019), gradients are
clipped to a global norm. Data parallel under ``torchrun``
(:mod:`.distributed`): every process walks the same global batches and
takes rows ``rank::world`` of each; a process left without rows (tail
batch) runs ``batch_loss(batch[:1], dummy=True)``, which must contribute
nothing but still take part in the gradient all-reduce.
"""
import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

from . import distributed as ddp
from .data import length_batches

MIN_GAIN = 1e-4   # a selected score must improve by more than this


@dataclass
class StepLoss:
    loss: torch.Tensor   # what backward() sees (normalised over processes)
    total: float         # summed loss of this process's rows, for the log
    count: float         # how many rows (or tokens) ``total`` sums over


@dataclass
class Schedule:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay
    to 10 % of it at step ``total``."""
    peak: float
    total: int
    warmup: int

    @classmethod
    def for_run(cls, n_rows: int, batch_size: int, epochs: int, peak: float,
                warmup_fraction: float) -> "Schedule":
        total = math.ceil(n_rows / batch_size) * epochs
        return cls(peak, total, max(1, int(warmup_fraction * total)))

    def __call__(self, step: int) -> float:
        return lr_at(step, self.total, self.peak, self.warmup)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` then cosine decay to 10 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int
                  ) -> Callable[[int], List[List[int]]]:
    """Length-homogeneous shuffled batches, a new order every epoch that
    depends only on ``seed`` and the epoch (so resumed runs repeat it)."""
    return lambda epoch: length_batches(lengths, batch_size, shuffle=True,
                                        seed=seed * 1000 + epoch)


def train_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer,
                batches: List[List[int]], batch_loss, schedule: Schedule,
                step: int, grad_clip: float, on_step=None) -> dict:
    """One pass over ``batches``; returns this process's summed loss and
    count, the step reached and the last learning rate."""
    total = count = 0.0
    lr = schedule(step)
    for i, batch in enumerate(batches):
        lr = schedule(step)
        for g in opt.param_groups:
            g["lr"] = lr
        mine = ddp.shard(batch)
        out = batch_loss(mine or batch[:1], not mine)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        step += 1
        total += out.total
        count += out.count
        if on_step is not None:
            on_step(i, len(batches), lr, out)
    return {"step": step, "total": total, "count": count, "lr": lr}


def _improved(score: float, best: Optional[float], maximize: bool,
              tolerance: float = 0.0) -> bool:
    """Whether an epoch's score makes it the selected one: better than the
    best so far, or, with ``tolerance``, no more than that worse (a later
    epoch within noise of the best is preferred: it has learnt more)."""
    if best is None:
        return True
    if tolerance > 0:
        return score >= best - tolerance if maximize \
            else score <= best + tolerance
    return score > best + MIN_GAIN if maximize else score < best - MIN_GAIN


def run_epochs(model: torch.nn.Module, opt: torch.optim.Optimizer,
               batch_loss, batches, schedule: Schedule, grad_clip: float,
               epochs: Sequence[int], *, device, step: int = 0,
               rate_key: str = "seq_per_s",
               evaluate: Optional[Callable[[int], Dict]] = None,
               select: Optional[str] = None, maximize: bool = False,
               patience: Optional[int] = None, tolerance: float = 0.0,
               report=None, on_step=None,
               history: Optional[List[dict]] = None,
               progress: Callable[[str], None] = lambda m: None
               ) -> List[dict]:
    """Train for ``epochs`` (e.g. ``range(1, n + 1)``); returns the history
    (``history`` extended in place when given), one record per epoch:
    epoch, train_loss, ``rate_key`` (count per second), seconds, lr, the
    fields of ``evaluate`` and ``best: True`` on selected epochs. With
    ``select`` the model ends with the weights of the best epoch (the
    latest within ``tolerance`` of the best score, when given); with
    ``patience`` too, training stops once that many epochs in a row
    brought no gain."""
    history = [] if history is None else history
    best = best_state = None
    bad = 0
    for epoch in epochs:
        model.train()
        t0 = time.time()
        hook = None if on_step is None else (
            lambda *a, e=epoch: on_step(e, *a))
        ep = train_epoch(model, opt, batches(epoch), batch_loss, schedule,
                         step, grad_clip, hook)
        step = ep["step"]
        total = ddp.all_reduce_sum(ep["total"], device)
        count = ddp.all_reduce_sum(ep["count"], device)
        secs = time.time() - t0
        rec = {"epoch": epoch, "train_loss": total / max(count, 1),
               rate_key: count / max(secs, 1e-9), "seconds": secs,
               "lr": ep["lr"]}
        if evaluate is not None:
            rec.update(evaluate(epoch))
        if select is not None:
            # rank 0's score, so that every process decides the same
            score = rec[select] = ddp.broadcast_object(rec[select])
            if _improved(score, best, maximize, tolerance):
                best = score if best is None else (
                    max(best, score) if maximize else min(best, score))
                bad, rec["best"] = 0, True
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
        history.append(rec)
        if report is not None:
            report(rec)
        if select is not None and patience is not None and bad >= patience:
            progress(f"early stopping: no {select} gain for {bad} epochs; "
                     f"keeping epoch {epoch - bad}")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
