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
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import distributed as ddp
from .config import ModelConfig, preset
from .data import clean_sequence, length_batches
from .model import BarcodeMambaLM
from .tokenizer import PAD_ID, DNATokenizer
from .train import lr_at, log, pad_batch, resolve_device, seed_everything, \
    set_threads


@dataclass
class PretrainConfig:
    epochs: int = 15              # paper: 15 epochs
    batch_size: int = 64          # sequences per step, over all processes
    learning_rate: float = 8e-4   # paper: 8e-4 (AdamW, warm-up + cosine)
    weight_decay: float = 0.1
    warmup_fraction: float = 0.02
    grad_clip: float = 1.0
    max_length: int = 512         # tokens kept per sequence (5' end)
    vocab_size: int = 1024        # BPE vocabulary incl. special tokens
    validation_fraction: float = 0.02  # random sequences held out for val loss
    random_seed: int = 0
    device: str = "auto"
    n_threads: int = 0
    log_every: int = 200          # steps between progress lines
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class PretrainedBackbone:
    """What pretraining produces and fine-tuning starts from."""
    model_config: ModelConfig
    tokenizer: DNATokenizer
    state: Dict[str, torch.Tensor]   # Backbone state_dict (no "backbone.")
    info: dict                       # preset, pretrain_config, history, ...

    def classifier_state(self) -> Dict[str, torch.Tensor]:
        """The weights as keys of :class:`.model.BarcodeMambaNet`."""
        return {f"backbone.{k}": v for k, v in self.state.items()}


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


def pretrain(ids: Sequence[str], seqs: Sequence[str],
             preset_name: str = "tiny",
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
    device = ddp.setup(resolve_device(pc.device))
    say = progress if ddp.is_main() else (lambda msg: None)
    set_threads(pc.n_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t_start = time.time()
    seqs = clean_corpus(ids, seqs)

    resume = load_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if resume is not None:
        rstate, rtensors = resume
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
        tokenizer = DNATokenizer.from_json(rstate["tokenizer"])
        cfg = ModelConfig.from_dict(rstate["model_config"])
        say(f"resuming from {checkpoint_dir} after epoch {rstate['epoch']}")
    else:
        if tokenizer is None:
            say(f"learning a {pc.vocab_size}-token BPE vocabulary on "
                f"{len(seqs)} sequences")
            tokenizer = DNATokenizer.train(seqs, pc.vocab_size)
        cfg = model_config or preset(preset_name)
        cfg.vocab_size = tokenizer.vocab_size
        cfg.validate()

    tokens = [t for t in tokenizer.encode(seqs, pc.max_length) if len(t) > 1]
    rng = random.Random(pc.random_seed)
    order = list(range(len(tokens)))
    rng.shuffle(order)
    n_val = int(round(pc.validation_fraction * len(tokens)))
    val = [tokens[i] for i in order[:n_val]]
    train = [tokens[i] for i in order[n_val:]]
    lengths = [len(t) for t in train]

    seed_everything(pc.random_seed)
    model = BarcodeMambaLM(cfg).to(device)
    opt = torch.optim.AdamW(model.param_groups(pc.weight_decay),
                            lr=pc.learning_rate, betas=(0.9, 0.95))
    history: List[dict] = []
    first_epoch = 1
    if resume is not None:
        model.load_state_dict({k[len("model."):]: v for k, v in
                               rtensors.items() if k.startswith("model.")})
        _opt_from_tensors(opt, rtensors, rstate["optimizer"])
        history = rstate["history"]
        first_epoch = rstate["epoch"] + 1
    dmodel = ddp.wrap(model, device)

    world = ddp.world_size()
    steps_per_epoch = len(length_batches(lengths, pc.batch_size))
    total = steps_per_epoch * pc.epochs
    warmup = max(1, int(pc.warmup_fraction * total))
    step = (first_epoch - 1) * steps_per_epoch
    n_tok = sum(lengths)
    say(f"pretraining {model.num_parameters():,} parameters "
        f"({cfg.n_layers} layers, d_model {cfg.d_model}) on {len(train)} "
        f"sequences / {n_tok:,} tokens ({len(val)} held out), "
        f"device {device}, {world} process(es), "
        f"{torch.get_num_threads()} threads")
    model.train()
    for epoch in range(first_epoch, pc.epochs + 1):
        t0, ep_loss, ep_tok, win_t, win_tok = time.time(), 0.0, 0, time.time(), 0
        batches = length_batches(lengths, pc.batch_size, shuffle=True,
                                 seed=pc.random_seed * 1000 + epoch)
        for i, gb in enumerate(batches):
            lr = lr_at(step, total, pc.learning_rate, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            # a process left without rows (tail batch) runs one row with
            # all targets masked, so it still joins the all-reduce
            mine = ddp.shard(gb)
            dummy = not mine
            tok, _ = pad_batch([train[j] for j in mine or gb[:1]], device)
            if dummy:
                tok[:, 1:] = PAD_ID
            n_local = int((tok[:, 1:] != PAD_ID).sum())
            n_global = ddp.all_reduce_sum(n_local, device)
            loss_sum = lm_loss_sum(dmodel(tok[:, :-1]), tok)
            loss = loss_sum * (world / max(n_global, 1.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), pc.grad_clip)
            opt.step()
            step += 1
            batch_loss = ddp.all_reduce_sum(loss_sum.item(), device)
            ep_loss += batch_loss
            ep_tok += n_global
            win_tok += n_global
            if pc.log_every and (i + 1) % pc.log_every == 0:
                now = time.time()
                say(f"epoch {epoch} step {i + 1}/{len(batches)} loss "
                    f"{batch_loss / max(n_global, 1):.4f} lr {lr:.2e} "
                    f"{win_tok / max(now - win_t, 1e-9):,.0f} tokens/s")
                win_t, win_tok = now, 0
        secs = time.time() - t0
        rec = {"epoch": epoch, "train_loss": ep_loss / max(ep_tok, 1),
               "tokens_per_s": ep_tok / max(secs, 1e-9), "seconds": secs,
               "lr": lr_at(step - 1, total, pc.learning_rate, warmup)}
        if val:
            rec["val_loss"] = lm_validation_loss(model, val,
                                                 pc.batch_size * 2, device)
        history.append(rec)
        say(f"epoch {epoch}/{pc.epochs} loss {rec['train_loss']:.4f}"
            + (f" val_loss {rec['val_loss']:.4f}" if val else "")
            + f" ({math.exp(rec['train_loss']):.2f} perplexity) "
            f"{rec['tokens_per_s']:,.0f} tokens/s {secs:.0f} s")
        if checkpoint_dir and ddp.is_main():
            save_checkpoint(checkpoint_dir, model, opt, {
                "epoch": epoch, "preset": preset_name,
                "pretrain_config": pc.to_dict(),
                "model_config": cfg.to_dict(),
                "tokenizer": tokenizer.to_json(), "history": history})
        ddp.barrier()
    model.eval()
    state = {k[len("backbone."):]: v.detach().cpu().clone()
             for k, v in model.state_dict().items()
             if k.startswith("backbone.")}
    info = {"preset": preset_name if model_config is None else "custom",
            "pretrain_config": pc.to_dict(), "history": history,
            "n_sequences": len(seqs), "n_train_tokens": n_tok,
            "n_parameters": model.num_parameters(),
            "processes": world, "device": device.type,
            "seconds": time.time() - t_start}
    return PretrainedBackbone(cfg, tokenizer, state, info)
