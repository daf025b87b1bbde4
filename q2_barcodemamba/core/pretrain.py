"""Self-supervised pretraining of the BarcodeMamba+ backbone.

Next-token prediction on unlabelled barcodes (BarcodeMamba+, arXiv
2512.15931, following the causal language-model objective of GPT; Radford et
al. 2018): a BPE tokenizer is learnt on the corpus, then
:class:`.model.BarcodeMambaLM` (backbone + output projection tied to the
embedding) minimises the cross-entropy of every next token. The result is a
:class:`PretrainedBackbone` (tokenizer + backbone weights + config) that
:class:`.classifier.TaxonomicClassifier` fine-tunes.

Long runs: ``checkpoint_dir`` receives ``checkpoint.json`` +
``checkpoint.safetensors`` (weights and AdamW state, no pickle) after every
epoch, written atomically; calling :func:`pretrain` again with the same
directory and configuration resumes after the last finished epoch and gives
the same weights as an uninterrupted run (batch order depends only on the
seed and the epoch). Data parallel under ``torchrun``: see
:mod:`.distributed`.
"""
import json
import math
import os
import random
import time
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import distributed as ddp
from .backbones import PretrainedBackbone
from .config import DEFAULT_PRESET, ModelConfig, PretrainConfig, preset
from .data import clean_sequence, length_batches
from .loop import Schedule, StepLoss, epoch_batches, run_epochs
from .model import BarcodeMambaLM
from .runtime import (configure, log, main_only, pad_batch,
                      seed_everything)
from .tokenizer import PAD_ID, DNATokenizer


def lm_loss_sum(logits: torch.Tensor, tokens: torch.Tensor
                ) -> torch.Tensor:
    """Summed next-token cross-entropy; logits (B, L, V) for inputs
    ``tokens[:, :-1]``, targets ``tokens[:, 1:]`` (padding ignored)."""
    return F.cross_entropy(logits.float().flatten(0, 1),
                           tokens[:, 1:].flatten(), ignore_index=PAD_ID,
                           reduction="sum")


def clean_corpus(ids: Sequence[str], seqs: Sequence[str]) -> List[str]:
    """Validate an unlabelled corpus: unique ids, IUPAC only, not empty."""
    seen = set()
    out = []
    for rid, s in zip(ids, seqs):
        if rid in seen:
            raise ValueError(f"Sequence id {rid!r} occurs more than once in "
                             "the pretraining sequences: dereplicate or "
                             "rename them.")
        seen.add(rid)
        c = clean_sequence(s, rid)
        if not c:
            raise ValueError(f"Sequence {rid!r} is empty: remove empty "
                             "records from the pretraining sequences.")
        out.append(c)
    if not out:
        raise ValueError("No pretraining sequences were given.")
    return out


# ----------------------------------------------------------- checkpoints
def _opt_to_tensors(opt: torch.optim.Optimizer):
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        meta["state"][str(idx)] = sorted(st)
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().cpu()
    return tensors, meta


def _opt_from_tensors(opt: torch.optim.Optimizer, tensors, meta) -> None:
    state = {int(idx): {k: tensors[f"opt.{idx}.{k}"] for k in keys}
             for idx, keys in meta["state"].items()}
    opt.load_state_dict({"state": state,
                         "param_groups": meta["param_groups"]})


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    tmp = path + ".tmp"
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(directory: str, model: BarcodeMambaLM,
                    opt: torch.optim.Optimizer, state: dict) -> None:
    """Weights + optimizer in safetensors, the rest in JSON, atomically
    (the JSON, written last, marks the checkpoint complete)."""
    os.makedirs(directory, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    opt_t, opt_meta = _opt_to_tensors(opt)
    tensors.update(opt_t)
    _atomic_write(os.path.join(directory, "checkpoint.safetensors"),
                  lambda p: save_file(tensors, p))
    state = {**state, "optimizer": opt_meta}
    _atomic_write(os.path.join(directory, "checkpoint.json"),
                  lambda p: json.dump(state, open(p, "w"), indent=1))


def load_checkpoint(directory: str) -> Optional[tuple]:
    """(state dict from JSON, tensors) or None when there is none."""
    jpath = os.path.join(directory, "checkpoint.json")
    if not os.path.isfile(jpath):
        return None
    with open(jpath) as fh:
        state = json.load(fh)
    tensors = load_file(os.path.join(directory, "checkpoint.safetensors"))
    return state, tensors


def backbone_from_checkpoint(directory: str) -> "PretrainedBackbone":
    """The backbone of the last finished epoch of a (possibly interrupted)
    run, e.g. to fine-tune from it before pretraining has ended."""
    found = load_checkpoint(directory)
    if found is None:
        raise ValueError(f"{directory} holds no checkpoint.json.")
    state, tensors = found
    cfg = ModelConfig.from_dict(state["model_config"])
    weights = {k[len("model.backbone."):]: v for k, v in tensors.items()
               if k.startswith("model.backbone.")}
    info = {"preset": state["preset"], "history": state["history"],
            "pretrain_config": state["pretrain_config"],
            "checkpoint_epoch": state["epoch"]}
    return PretrainedBackbone(cfg, DNATokenizer.from_json(state["tokenizer"]),
                              weights, info)


# ----------------------------------------------------------- training
@torch.no_grad()
def lm_validation_loss(model, tokens: Sequence[Sequence[int]],
                       batch_size: int, device) -> float:
    """Mean next-token cross-entropy (nats per token) of ``tokens``."""
    model.eval()
    total, count = 0.0, 0
    for b in length_batches([len(t) for t in tokens], batch_size):
        tok, _ = pad_batch([tokens[i] for i in b], device)
        total += lm_loss_sum(model(tok[:, :-1]), tok).item()
        count += int((tok[:, 1:] != PAD_ID).sum())
    model.train()
    return total / max(count, 1)


def lm_step(dmodel, tokens: Sequence[Sequence[int]], device
            ) -> Callable[[list, bool], StepLoss]:
    """The loop's batch -> loss function of next-token prediction: the
    summed cross-entropy over this process's tokens divided by the tokens
    of the whole global batch (times the world size, which DDP's gradient
    averaging undoes), so N processes make the single-process update."""
    world = ddp.world_size()

    def batch_loss(rows, dummy: bool) -> StepLoss:
        tok, _ = pad_batch([tokens[j] for j in rows], device)
        if dummy:   # no rows here: all targets masked, joins the all-reduce
            tok[:, 1:] = PAD_ID
        n_local = int((tok[:, 1:] != PAD_ID).sum())
        n_global = ddp.all_reduce_sum(n_local, device)
        loss_sum = lm_loss_sum(dmodel(tok[:, :-1]), tok)
        return StepLoss(loss_sum * (world / max(n_global, 1.0)),
                        loss_sum.item(), n_local)
    return batch_loss


def _resume(checkpoint_dir: Optional[str], pc: PretrainConfig,
            preset_name: str, model_config: Optional[ModelConfig]):
    """The checkpoint to resume from (state, tensors), or None; refuses a
    checkpoint of a run with other parameters."""
    resume = load_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if resume is None:
        return None
    rstate = resume[0]
    ignore = ("device", "n_threads", "log_every")
    same = {k: v for k, v in pc.to_dict().items() if k not in ignore}
    theirs = {k: v for k, v in rstate["pretrain_config"].items()
              if k not in ignore}
    if same != theirs or (
            rstate["preset"] != preset_name and model_config is None):
        raise ValueError(
            f"{checkpoint_dir} holds a checkpoint of another run "
            f"(preset {rstate['preset']!r}, {rstate['pretrain_config']});"
            " use the same parameters to resume, or an empty directory "
            "to start afresh.")
    return resume


def _tokenizer_and_config(resume, tokenizer, seqs, pc: PretrainConfig,
                          preset_name: str, model_config, say):
    """Tokenizer and model configuration: the checkpoint's when resuming,
    else ``tokenizer`` (or one learnt on ``seqs``) and the preset's."""
    if resume is not None:
        rstate = resume[0]
        return (DNATokenizer.from_json(rstate["tokenizer"]),
                ModelConfig.from_dict(rstate["model_config"]))
    if tokenizer is None:
        say(f"learning a {pc.vocab_size}-token BPE vocabulary on "
            f"{len(seqs)} sequences")
        tokenizer = DNATokenizer.train(seqs, pc.vocab_size)
    cfg = model_config or preset(preset_name)
    cfg.vocab_size = tokenizer.vocab_size
    return tokenizer, cfg.validate()


def _split(tokens: List[List[int]], fraction: float, seed: int):
    """(train, validation) token lists: a seeded random share held out."""
    rng = random.Random(seed)
    order = list(range(len(tokens)))
    rng.shuffle(order)
    n_val = int(round(fraction * len(tokens)))
    return ([tokens[i] for i in order[n_val:]],
            [tokens[i] for i in order[:n_val]])


class _WindowLog:
    """The loop's per-step hook: every ``log_every`` steps, the loss of the
    step and the tokens/s since the last line or the epoch's start (summed
    over processes). :meth:`restart` starts a new window."""

    def __init__(self, every: int, say, device):
        self.every, self.say, self.device = every, say, device
        self.restart()

    def restart(self) -> None:
        self.t, self.tokens = time.time(), 0.0

    def __call__(self, epoch: int, i: int, n_batches: int, lr: float,
                 out: StepLoss) -> None:
        self.tokens += out.count
        if not self.every or (i + 1) % self.every:
            return
        loss = ddp.all_reduce_sum(out.total, self.device)
        n = ddp.all_reduce_sum(out.count, self.device)
        tokens = ddp.all_reduce_sum(self.tokens, self.device)
        now = time.time()
        self.say(f"epoch {epoch} step {i + 1}/{n_batches} loss "
                 f"{loss / max(n, 1):.4f} lr {lr:.2e} "
                 f"{tokens / max(now - self.t, 1e-9):,.0f} tokens/s")
        self.restart()


def _epoch_report(pc, say, save, window: _WindowLog):
    """The loop's per-epoch hook: progress line, then the checkpoint."""
    def report(rec: dict) -> None:
        say(f"epoch {rec['epoch']}/{pc.epochs} loss {rec['train_loss']:.4f}"
            + (f" val_loss {rec['val_loss']:.4f}" if "val_loss" in rec
               else "")
            + f" ({math.exp(rec['train_loss']):.2f} perplexity) "
            f"{rec['tokens_per_s']:,.0f} tokens/s {rec['seconds']:.0f} s")
        save(rec["epoch"])
        ddp.barrier()
        window.restart()
    return report


def pretrain(ids: Sequence[str], seqs: Sequence[str],
             preset_name: str = DEFAULT_PRESET,
             model_config: Optional[ModelConfig] = None,
             config: Optional[PretrainConfig] = None,
             tokenizer: Optional[DNATokenizer] = None,
             checkpoint_dir: Optional[str] = None,
             progress: Callable[[str], None] = log) -> PretrainedBackbone:
    """Pretrain a backbone by next-token prediction on ``seqs``.

    ``tokenizer``: reuse a trained tokenizer instead of learning one on
    ``seqs``. ``checkpoint_dir``: write a checkpoint after every epoch and
    resume from one found there (same configuration required).
    """
    pc = config or PretrainConfig()
    device = ddp.setup(configure(pc.device, pc.n_threads, tf32=True))
    say = main_only(progress)
    t_start = time.time()
    seqs = clean_corpus(ids, seqs)
    resume = _resume(checkpoint_dir, pc, preset_name, model_config)
    if resume is not None:
        say(f"resuming from {checkpoint_dir} after epoch "
            f"{resume[0]['epoch']}")
    tokenizer, cfg = _tokenizer_and_config(resume, tokenizer, seqs, pc,
                                           preset_name, model_config, say)
    tokens = [t for t in tokenizer.encode(seqs, pc.max_length) if len(t) > 1]
    train, val = _split(tokens, pc.validation_fraction, pc.random_seed)
    seed_everything(pc.random_seed)
    model = BarcodeMambaLM(cfg).to(device)
    opt = torch.optim.AdamW(model.param_groups(pc.weight_decay),
                            lr=pc.learning_rate, betas=(0.9, 0.95))
    history: List[dict] = []
    first_epoch = 1
    if resume is not None:
        rstate, rtensors = resume
        model.load_state_dict({k[len("model."):]: v for k, v in
                               rtensors.items() if k.startswith("model.")})
        _opt_from_tensors(opt, rtensors, rstate["optimizer"])
        history = rstate["history"]
        first_epoch = rstate["epoch"] + 1
    schedule = Schedule.for_run(len(train), pc.batch_size, pc.epochs,
                                pc.learning_rate, pc.warmup_fraction)
    n_tok = sum(len(t) for t in train)
    say(f"pretraining {model.num_parameters():,} parameters "
        f"({cfg.n_layers} layers, d_model {cfg.d_model}) on {len(train)} "
        f"sequences / {n_tok:,} tokens ({len(val)} held out), "
        f"device {device}, {ddp.world_size()} process(es), "
        f"{torch.get_num_threads()} threads")

    def save(epoch: int) -> None:
        if checkpoint_dir and ddp.is_main():
            save_checkpoint(checkpoint_dir, model, opt, {
                "epoch": epoch, "preset": preset_name,
                "pretrain_config": pc.to_dict(),
                "model_config": cfg.to_dict(),
                "tokenizer": tokenizer.to_json(), "history": history})

    window = _WindowLog(pc.log_every, say, device)
    run_epochs(
        model, opt, lm_step(ddp.wrap(model, device), train, device),
        epoch_batches([len(t) for t in train], pc.batch_size,
                      pc.random_seed), schedule, pc.grad_clip,
        range(first_epoch, pc.epochs + 1), device=device,
        step=(first_epoch - 1) * math.ceil(len(train) / pc.batch_size),
        rate_key="tokens_per_s", history=history,
        evaluate=(lambda epoch: {"val_loss": lm_validation_loss(
            model, val, pc.batch_size * 2, device)}) if val else None,
        report=_epoch_report(pc, say, save, window), on_step=window)
    model.eval()
    return _backbone(model, cfg, tokenizer, {
        "preset": preset_name if model_config is None else "custom",
        "pretrain_config": pc.to_dict(), "history": history,
        "n_sequences": len(seqs), "n_train_tokens": n_tok,
        "n_parameters": model.num_parameters(),
        "processes": ddp.world_size(), "device": device.type,
        "seconds": time.time() - t_start})


def _backbone(model: BarcodeMambaLM, cfg: ModelConfig,
              tokenizer: DNATokenizer, info: dict) -> PretrainedBackbone:
    """The backbone weights of a pretrained language model."""
    state = {k[len("backbone."):]: v.detach().cpu().clone()
             for k, v in model.state_dict().items()
             if k.startswith("backbone.")}
    return PretrainedBackbone(cfg, tokenizer, state, info)
