"""Supervised training of a BarcodeMamba+ classifier (fine-tuning loop).

AdamW with decoupled weight decay (Loshchilov & Hutter 2019), linear warm-up
then cosine decay, global gradient clipping, a leakage-free validation split
(:mod:`.split`), early stopping on validation loss with the best weights
restored, and temperature scaling of the leaf head on the validation split
(Guo et al. 2017). Progress goes to stderr; everything is seeded.
"""
import copy
import math
from dataclasses import replace
import random
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed as ddp
from .config import FINETUNE_LR, SCRATCH_LR, ModelConfig, TrainConfig
from .data import length_batches
from .losses import HierarchicalSmoother, RankSmoother, class_weights
from .model import BarcodeMambaNet
from .tokenizer import PAD_ID


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; validates explicit names."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but PyTorch sees no "
                         "CUDA GPU; use device='cpu' or 'auto'.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not "
                         f"{device!r}.")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def set_threads(n_threads: int) -> None:
    if n_threads and n_threads > 0:
        torch.set_num_threads(n_threads)


def pad_batch(token_lists: Sequence[Sequence[int]], device) -> Tuple[
        torch.Tensor, torch.Tensor]:
    """Right-pad token id lists -> tokens (B, L) long, mask (B, L) bool."""
    L = max(1, max(len(t) for t in token_lists))
    tokens = torch.full((len(token_lists), L), PAD_ID, dtype=torch.long)
    for i, t in enumerate(token_lists):
        tokens[i, :len(t)] = torch.as_tensor(t, dtype=torch.long)
    tokens = tokens.to(device)
    return tokens, tokens != PAD_ID


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` then cosine decay to 10 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class MultiTaskLoss:
    """Mean over heads of each head's cross-entropy; target -1 is ignored.

    Per head, optionally: hierarchical label smoothing (``hls_epsilon`` per
    ancestor rank, MycoAI / BarcodeMamba+; see :mod:`.losses`) or else flat
    ``label_smoothing``, and class weights ``w_c ~ n_c^-power``
    (``class_weight_power``; 0.5 = inverse square root, BarcodeMamba+).
    The last head is the leaf head; its ancestors are given by
    ``leaf_to_class`` (R, n_leaf).
    """

    def __init__(self, tcfg: TrainConfig, classes: Sequence[Sequence[str]],
                 leaf_to_class: np.ndarray, train_y: np.ndarray, device,
                 heads: Optional[Sequence[int]] = None):
        n_ranks = len(classes)
        # which of the R + 1 heads the network has (single-head: leaf only)
        self.heads = list(range(n_ranks + 1)) if heads is None else list(heads)
        n_classes = [len(c) for c in classes] + [leaf_to_class.shape[1]]
        self.flat = tcfg.label_smoothing
        self.smoothers = [None] * (n_ranks + 1)
        if tcfg.hls_epsilon > 0:
            counts = [np.bincount(train_y[:, r][train_y[:, r] >= 0],
                                  minlength=n) for r, n in enumerate(n_classes)]
            hs = HierarchicalSmoother(classes, counts[:n_ranks],
                                      tcfg.hls_epsilon)
            self.smoothers[:n_ranks] = [hs[r] for r in range(n_ranks)]
            # leaf head: its ancestor at rank l is leaf_to_class[l]; a leaf
            # without a label at l gets a group of its own
            groups = leaf_to_class.copy()
            for r in range(n_ranks):
                miss = groups[r] < 0
                groups[r, miss] = n_classes[r] + np.arange(miss.sum())
            self.smoothers[-1] = RankSmoother(
                groups[:-1], counts[-1], [tcfg.hls_epsilon] * (n_ranks - 1))
            self.smoothers = [sm.to(device) if sm is not None else None
                              for sm in self.smoothers]
        self.weights = [None] * (n_ranks + 1)
        if tcfg.class_weight_power > 0:
            self.weights = [class_weights(train_y[:, h], n,
                                          tcfg.class_weight_power).to(device)
                            for h, n in enumerate(n_classes)]
        self.smoothers = [self.smoothers[h] for h in self.heads]
        self.weights = [self.weights[h] for h in self.heads]

    def __call__(self, logits: List[torch.Tensor], targets: torch.Tensor
                 ) -> torch.Tensor:
        """logits: per head (B, n_h); targets: (B, n_heads) long, columns
        in the order of the network's heads.

        Each head's loss is a weighted mean over its known targets; under
        DDP the denominators are summed over processes (and the result
        scaled by the world size, which DDP's gradient averaging undoes),
        so N processes compute exactly the single-process loss.
        """
        nums, dens = [], []
        for h, lg in enumerate(logits):
            t = targets[:, h]
            known = t >= 0
            sm, w = self.smoothers[h], self.weights[h]
            if sm is not None:
                soft = sm(t, dtype=torch.float32)              # (B, n_h)
                logp = F.log_softmax(lg.float(), dim=-1)
                per = -torch.where(soft > 0, soft * logp,
                                   torch.zeros_like(logp)).sum(-1)
            else:
                per = F.cross_entropy(lg.float(), t.clamp(min=0),
                                      label_smoothing=self.flat,
                                      reduction="none")
            wt = known.float()
            if w is not None:
                wt = wt * w[t.clamp(min=0)]
            nums.append((wt * per).sum())
            dens.append(wt.sum())
        den = torch.stack(dens)
        scale = 1.0
        if ddp.is_distributed():
            den = den.detach().clone()
            torch.distributed.all_reduce(den)
            scale = float(ddp.world_size())
        use = den > 0
        per_head = torch.stack(nums) / den.clamp(min=1e-12)
        n_used = use.sum().clamp(min=1)
        return scale * (per_head * use).sum() / n_used


@torch.no_grad()
def evaluate(net: BarcodeMambaNet, tokens: Sequence[Sequence[int]],
             targets: np.ndarray, batch_size: int, device,
             loss_fn: MultiTaskLoss) -> Tuple[float, np.ndarray, torch.Tensor]:
    """Validation loss, per-head accuracy (argmax) and leaf logits (n, n_leaf)."""
    net.eval()
    total, n, correct, seen = 0.0, 0, None, None
    leaf_logits = []
    order = length_batches([len(t) for t in tokens], batch_size)
    inverse = np.empty(len(tokens), dtype=np.int64)
    pos = 0
    for b in order:
        tok, mask = pad_batch([tokens[i] for i in b], device)
        y = torch.as_tensor(targets[b], device=device)
        logits = net(tok, mask)
        total += loss_fn(logits, y).item() * len(b)
        n += len(b)
        pred = torch.stack([lg.argmax(-1) for lg in logits], 1)
        ok = ((pred == y) & (y >= 0)).sum(0).cpu().numpy()
        cnt = (y >= 0).sum(0).cpu().numpy()
        correct = ok if correct is None else correct + ok
        seen = cnt if seen is None else seen + cnt
        leaf_logits.append(logits[-1].float().cpu())
        inverse[b] = np.arange(pos, pos + len(b))
        pos += len(b)
    acc = correct / np.maximum(seen, 1)
    return total / max(n, 1), acc, torch.cat(leaf_logits)[inverse]


def head_index(labels, heads: str) -> List[int]:
    """Columns of the (n, R + 1) target matrix that the network predicts:
    all ranks + leaf ('multi', BarcodeMamba+) or the leaf only ('single')."""
    if heads == "multi":
        return list(range(len(labels.n_classes) + 1))
    if heads == "single":
        return [len(labels.n_classes)]
    raise ValueError(f"heads must be 'multi' or 'single', not {heads!r}.")


def head_sizes(labels, heads: str) -> List[int]:
    sizes = labels.n_classes + [len(labels.leaves)]
    return [sizes[h] for h in head_index(labels, heads)]


def fit_network(cfg: ModelConfig, tcfg: TrainConfig, labels,
                train_tokens: Sequence[Sequence[int]], train_y: np.ndarray,
                val_tokens: Sequence[Sequence[int]], val_y: np.ndarray,
                progress: Callable[[str], None] = log,
                init_state: Optional[dict] = None):
    """Train ``BarcodeMambaNet`` and return (net, history, val_leaf_logits).

    ``labels``: the LabelEncoder (heads = its ranks + the leaf head, or the
    leaf head only when ``tcfg.heads == 'single'``).
    ``train_y``/``val_y``: (n, R + 1) class targets, -1 = unknown. The
    returned net holds the weights of the epoch with the lowest validation
    loss (or the last epoch when there is no validation data).
    ``init_state``: starting weights (e.g. a pretrained backbone's), loaded
    non-strictly over the fresh initialisation.
    Under ``torchrun`` the batches are split over the processes
    (:mod:`.distributed`); every process returns the same network.
    """
    if tcfg.learning_rate is None:
        tcfg = replace(tcfg, learning_rate=FINETUNE_LR if init_state
                       is not None else SCRATCH_LR)
    device = ddp.setup(resolve_device(tcfg.device))
    if not ddp.is_main():
        progress = lambda msg: None  # noqa: E731
    set_threads(tcfg.n_threads)
    seed_everything(tcfg.random_seed)
    cols = head_index(labels, tcfg.heads)
    rank_names = [(list(labels.rank_names) + ["leaf"])[h] for h in cols]
    net = BarcodeMambaNet(cfg, head_sizes(labels, tcfg.heads)).to(device)
    loss_fn = MultiTaskLoss(tcfg, labels.classes, labels.leaf_to_class,
                            train_y, device, heads=cols)
    train_y, val_y = train_y[:, cols], val_y[:, cols]
    if init_state is not None:
        missing, unexpected = net.load_state_dict(init_state, strict=False)
        if unexpected or any(k.startswith("backbone.") for k in missing):
            raise ValueError(f"The starting weights do not fit this model "
                             f"(unexpected {unexpected[:3]}, missing "
                             f"{[k for k in missing if 'backbone.' in k][:3]}).")
        net.to(device)
    dnet = ddp.wrap(net, device)
    opt = torch.optim.AdamW(net.param_groups(tcfg.weight_decay),
                            lr=tcfg.learning_rate, betas=(0.9, 0.98))
    lengths = [len(t) for t in train_tokens]
    steps_per_epoch = math.ceil(len(train_tokens) / tcfg.batch_size)
    total = steps_per_epoch * tcfg.epochs
    warmup = max(1, int(tcfg.warmup_fraction * total))
    has_val = len(val_tokens) > 0
    best, best_state, bad, step = math.inf, None, 0, 0
    history = []
    progress(f"training {net.num_parameters():,} parameters on "
             f"{len(train_tokens)} reads ({len(val_tokens)} for validation), "
             f"device {device}, {torch.get_num_threads()} threads")
    for epoch in range(1, tcfg.epochs + 1):
        net.train()
        t0, seen, run_loss = time.time(), 0, 0.0
        for b in length_batches(lengths, tcfg.batch_size, shuffle=True,
                                seed=tcfg.random_seed * 1000 + epoch):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, tcfg.learning_rate, warmup)
            # a process left without rows (tail batch) runs one masked row,
            # so every process takes part in each gradient all-reduce
            mine = ddp.shard(b)
            dummy = not mine
            b = mine or b[:1]
            tok, mask = pad_batch([train_tokens[i] for i in b], device)
            y = torch.as_tensor(train_y[b], device=device)
            if dummy:
                y = torch.full_like(y, -1)
            loss = loss_fn(dnet(tok, mask), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), tcfg.grad_clip)
            opt.step()
            step += 1
            seen += 0 if dummy else len(b)
            run_loss += 0.0 if dummy else loss.item() * len(b)
        seen = int(ddp.all_reduce_sum(seen, device))
        run_loss = ddp.all_reduce_sum(run_loss, device)
        rate = seen / max(time.time() - t0, 1e-9)
        rec = {"epoch": epoch, "train_loss": run_loss / max(seen, 1),
               "seq_per_s": rate, "lr": opt.param_groups[0]["lr"]}
        msg = (f"epoch {epoch}/{tcfg.epochs} loss {rec['train_loss']:.4f} "
               f"{rate:.0f} seq/s")
        if has_val:
            vl, acc, _ = evaluate(net, val_tokens, val_y, tcfg.batch_size * 2,
                                  device, loss_fn)
            vl = ddp.broadcast_object(vl)  # same early-stopping decision
            rec["val_loss"] = vl
            rec["val_accuracy"] = {r: float(a) for r, a in
                                   zip(rank_names, acc)}
            msg += f" val_loss {vl:.4f} val_acc " + " ".join(
                f"{r[:3]} {a:.3f}" for r, a in zip(rank_names, acc))
            if vl < best - 1e-4:
                best, bad = vl, 0
                best_state = copy.deepcopy(net.state_dict())
                rec["best"] = True
            else:
                bad += 1
        history.append(rec)
        progress(msg)
        if has_val and bad >= tcfg.patience:
            progress(f"early stopping: no val_loss gain for {bad} epochs; "
                     f"keeping epoch {epoch - bad}")
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    val_logits = None
    if has_val:
        _, _, val_logits = evaluate(net, val_tokens, val_y,
                                    tcfg.batch_size * 2, device, loss_fn)
    net.eval()
    return net, history, val_logits
