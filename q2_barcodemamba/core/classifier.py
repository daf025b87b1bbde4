"""scikit-learn-style classifier object: ``fit`` / ``predict`` /
``predict_proba``, deterministic given ``random_seed``.

This ties together tokenizer, labels, network, orientation and calibration;
saving and loading live in :mod:`.io`.
"""
import time
from dataclasses import replace
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .config import (DEFAULT_PRESET, FINETUNE_LR, MIN_READ_LENGTH,
                     SCRATCH_LR, ModelConfig, TrainConfig, preset)
from .data import (KmerOrienter, SeenIds, batched, clean_sequence,
                   length_batches, orient, token_batches)
from .heads import targets
from .inference import (DEFAULT_CONFIDENCE, THRESHOLDS, UNASSIGNED,
                        fit_temperature, hierarchical_walk, right_call_curve,
                        truncate)
from .runtime import configure, log, pad_batch
from .split import grouped_split
from .taxonomy import (LabelEncoder, parse_taxonomy, split_lineage,
                       warn_conflicts)
from .tokenizer import DNATokenizer
from .train import fit_network


def check_reference(ids: Sequence[str], seqs: Sequence[str],
                    taxonomy: Dict[str, str], min_length: int,
                    progress=log) -> List[str]:
    """Validate reference reads against their taxonomy; return clean seqs.

    Errors name the first offending ids, the count and the fix. Taxonomy
    records without a read (e.g. a full UNITE taxonomy beside filtered
    reads) are ignored and counted in the progress output, as
    classify-sklearn does; reads without taxonomy are an error.
    """
    if not len(ids):
        raise ValueError("No reference reads were given: the reference "
                         "must hold at least one read with its taxonomy.")
    dup = [i for i, c in Counter(ids).items() if c > 1]
    if dup:
        raise ValueError(f"{len(dup)} reference read ids occur more than "
                         f"once, e.g. {dup[:5]}. Ids must be unique: "
                         "dereplicate or rename the reads.")
    missing = [i for i in ids if i not in taxonomy]
    if missing:
        raise ValueError(f"{len(missing)} reference reads have no taxonomy, "
                         f"e.g. {missing[:5]}. Every reference read needs a "
                         "lineage: filter the reads to the taxonomy (e.g. "
                         "qiime feature-table filter-seqs).")
    n_extra = len(taxonomy) - len(set(ids))
    if n_extra > 0:
        progress(f"reference taxonomy: {n_extra} records without a reference "
                 "read ignored")
    clean = []
    for rid, s in zip(ids, seqs):
        c = clean_sequence(s, rid)
        if len(c) < min_length:
            raise ValueError(
                f"Reference read {rid!r} is {len(c)} bp long after removing "
                f"gaps; the minimum is {min_length} bp. Remove empty and "
                "very short reads from the reference.")
        clean.append(c)
    return clean


def refit_epochs(history: Sequence[dict]) -> int:
    """Epochs of the refit on all reads: the best validation epoch (the
    last one marked ``best``), or every epoch run without validation."""
    return max([h["epoch"] for h in history if h.get("best")],
               default=len(history))


def known_in(y: np.ndarray, y_ref: np.ndarray) -> np.ndarray:
    """Targets ``y`` (n, R) with classes absent from ``y_ref`` set to -1,
    so a held-out species is scored at its genus (if that was seen)."""
    out = y.copy()
    for r in range(y.shape[1]):
        seen = np.zeros(max(y.max(initial=0), y_ref.max(initial=0)) + 1,
                        dtype=bool)
        seen[y_ref[:, r][y_ref[:, r] >= 0]] = True
        col = out[:, r]
        col[(col >= 0) & ~seen[np.maximum(col, 0)]] = -1
    # below an unknown rank nothing is known
    unknown = np.cumsum(out < 0, axis=1) > 0
    out[unknown] = -1
    return out


# classify's batch_size "auto": the fastest measured. On a CPU batches are
# capped by padded tokens, not reads: the chunked scan's intermediates grow
# with batch x length and outgrow the caches (benchmarks/run.py sweep, 2
# threads, reads/s by reads per batch: full ITS, ~128 tokens per read: 16:
# 412, 64: 439, 256: 271, 1024: 114; ITS2, ~41 tokens: 16: 775, 64: 839,
# 256: 943). 8,192 tokens is ~64 full-ITS or ~200 ITS2 reads. On a GPU
# 1024 reads per batch were fastest end to end (docs/gpu.md).
CPU_BATCH_TOKENS, CPU_MAX_BATCH, GPU_BATCH = 8192, 256, 1024


def classify_batch_size(batch_size, device: torch.device) -> int:
    """``"auto"`` (or None) -> 0 on a CPU (batches capped at
    :data:`CPU_BATCH_TOKENS` padded tokens) or :data:`GPU_BATCH` reads on a
    GPU; else a positive int, reads per batch."""
    if batch_size in ("auto", None):
        return 0 if device.type == "cpu" else GPU_BATCH
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or 'auto', "
                         f"not {batch_size!r}.")
    return batch_size


class TaxonomicClassifier:
    """BarcodeMamba+ taxonomic classifier.

    Parameters: ``preset`` (ModelConfig preset name) or ``model_config``;
    ``train_config`` (TrainConfig). After ``fit`` the attributes
    ``tokenizer``, ``labels``, ``net``, ``orienter``, ``calibration`` and
    ``summary`` are set; :func:`.io.save_classifier` writes them.
    """

    def __init__(self, preset_name: str = DEFAULT_PRESET,
                 model_config: Optional[ModelConfig] = None,
                 train_config: Optional[TrainConfig] = None):
        self.preset_name = preset_name
        self.model_config = model_config
        self.train_config = train_config or TrainConfig()
        self.tokenizer = self.labels = self.net = self.orienter = None
        self.calibration: dict = {"temperature": 1.0}
        self.summary: dict = {}
        self.backbone_info: Optional[dict] = None
        self._oom_batch_size = None  # set after a CUDA out-of-memory retry

    # ------------------------------------------------------------- fitting
    def fit(self, ids: Sequence[str], seqs: Sequence[str],
            taxonomy: Dict[str, str], progress=log,
            backbone=None) -> "TaxonomicClassifier":
        """Train on reference reads (``ids``, ``seqs``) with lineages
        ``taxonomy`` (id -> ``k__...;s__...`` string; records of other ids
        are ignored).

        ``backbone``: a :class:`.backbones.PretrainedBackbone` to fine-tune
        (its tokenizer and model size are used); None trains from random
        weights with a tokenizer learnt on the reference.
        """
        tc = self.train_config
        if tc.learning_rate is None:
            tc = self.train_config = replace(
                tc, learning_rate=FINETUNE_LR if backbone is not None
                else SCRATCH_LR)
        t_start = time.time()
        seqs = check_reference(ids, seqs, taxonomy, tc.min_length, progress)
        lineages = parse_taxonomy(ids, [taxonomy[i] for i in ids])
        warn_conflicts(lineages)
        train_idx, val_idx = grouped_split(seqs, lineages,
                                           tc.validation_fraction,
                                           seed=tc.random_seed)
        progress(f"reference: {len(seqs)} reads; training on "
                 f"{len(train_idx)}, validating on {len(val_idx)} held-out "
                 "haplotypes and species")
        # classes come from all reads, so the refit below can learn the
        # held-out species too; validation targets only know training taxa
        self.labels = LabelEncoder.fit(
            lineages, len(split_lineage(taxonomy[ids[0]])))
        cfg, init_state = self._start(backbone, seqs, progress)
        tokens = self.tokenizer.encode(seqs, tc.max_length)
        y = targets(self.labels, lineages)                    # (n, R + 1)
        net, history, val_logits = fit_network(
            cfg, tc, self.labels, [tokens[i] for i in train_idx],
            y[train_idx], [tokens[i] for i in val_idx], y[val_idx], progress,
            init_state=init_state)
        self.net = net.cpu()
        n_ranks = len(self.labels.rank_names)
        self._calibrate(val_logits, known_in(y[val_idx, :n_ranks],
                                             y[train_idx, :n_ranks]),
                        progress)
        best_epoch = refit_epochs(history)
        if len(val_idx) and tc.refit:
            history = history + self._refit(cfg, tokens, y, best_epoch,
                                            init_state, progress)
        self.orienter = KmerOrienter.fit(seqs)
        self.summary = {
            "n_reference_reads": len(seqs), "n_train": int(len(train_idx)),
            "n_validation": int(len(val_idx)), "best_epoch": best_epoch,
            "classes_per_rank": dict(zip(self.labels.rank_names,
                                         self.labels.n_classes)),
            "n_leaves": len(self.labels.leaves),
            "n_parameters": self.net.num_parameters(),
            "history": history, "train_seconds": time.time() - t_start,
            "heads": tc.heads, "backbone": self.backbone_info,
        }
        return self

    def _start(self, backbone, seqs: Sequence[str], progress
               ) -> Tuple[ModelConfig, Optional[dict]]:
        """Set the tokenizer, model configuration and backbone record:
        the backbone's (fine-tuning) or new ones (from scratch). Returns
        the configuration and the starting weights (None from scratch)."""
        tc = self.train_config
        if backbone is None:
            self.tokenizer = DNATokenizer.train(seqs, tc.vocab_size)
            cfg = self.model_config or preset(self.preset_name)
            cfg.vocab_size = self.tokenizer.vocab_size
            self.backbone_info = None
            self.model_config = cfg.validate()
            return cfg, None
        self.tokenizer = backbone.tokenizer
        cfg = replace(backbone.model_config)
        if self.model_config is not None:  # keep e.g. dropout
            cfg.dropout = self.model_config.dropout
        self.preset_name = backbone.info.get("preset", "custom")
        self.backbone_info = {
            k: backbone.info.get(k) for k in
            ("name", "preset", "n_sequences", "n_train_tokens",
             "pretrain_config")}
        progress(f"fine-tuning the pretrained {self.preset_name} "
                 f"backbone ({backbone.info.get('name', 'custom')}) at "
                 f"learning rate {tc.learning_rate:g}")
        self.model_config = cfg.validate()
        return cfg, backbone.classifier_state()

    def _refit(self, cfg: ModelConfig, tokens, y: np.ndarray, epochs: int,
               init_state: Optional[dict], progress) -> List[dict]:
        """Train a fresh network on all reads for ``epochs`` epochs (no
        validation); keeps it and returns its history."""
        progress(f"refitting on all {len(tokens)} reads for {epochs} "
                 "epochs (the best validation epoch)")
        net, history, _ = fit_network(
            cfg, replace(self.train_config, epochs=epochs), self.labels,
            tokens, y, [], y[:0], progress, init_state=init_state)
        self.net = net.cpu()
        return [{**h, "refit": True} for h in history]

    def _calibrate(self, val_logits, y_val: np.ndarray, progress) -> None:
        if val_logits is None or len(y_val) == 0:
            self.calibration = {"temperature": 1.0}
            return
        l2c = torch.as_tensor(self.labels.leaf_to_class)
        temp = fit_temperature(val_logits, y_val, l2c, self.labels.n_classes)
        probs = torch.softmax(val_logits / temp, dim=1)
        chosen, conf = hierarchical_walk(probs, l2c, self.labels.n_classes)
        curve = right_call_curve(chosen.numpy(), conf.numpy(), y_val,
                                 THRESHOLDS)
        best = THRESHOLDS[int(np.argmax(curve))]
        self.calibration = {"temperature": temp, "thresholds": THRESHOLDS,
                            "right_call_rate": curve,
                            "best_confidence": best}
        progress(f"calibration: temperature {temp:.2f}; right-call rate on "
                 f"validation {max(curve):.3f} at confidence {best} "
                 f"({curve[THRESHOLDS.index(DEFAULT_CONFIDENCE)]:.3f} at "
                 f"{DEFAULT_CONFIDENCE})")

    # ---------------------------------------------------------- prediction
    def _check_fitted(self):
        if self.net is None:
            raise ValueError("This classifier has not been fitted.")

    @torch.no_grad()
    def _prob_batches(self, seqs: Sequence[str], batch_size: int, device,
                      progress=log) -> Iterator[Tuple[List[int], torch.Tensor]]:
        """Yield (indices, calibrated leaf probabilities (B, n_leaf) on CPU)
        over length-sorted batches of ``seqs``.

        On CUDA out-of-memory the batch size is halved and the batch retried
        (down to 1), with a message; the smaller size is kept afterwards.
        """
        tokens = self.tokenizer.encode(seqs, self.train_config.max_length)
        temp = self.calibration["temperature"]
        lengths = [len(t) for t in tokens]
        if batch_size == 0:                   # "auto" on a CPU
            pending = token_batches(lengths, CPU_BATCH_TOKENS, CPU_MAX_BATCH)
        else:
            batch_size = min(batch_size, self._oom_batch_size or batch_size)
            pending = length_batches(lengths, batch_size)
        while pending:
            b = pending.pop(0)
            try:
                tok, mask = pad_batch([tokens[i] for i in b], device)
                logits = self.net(tok, mask)[-1].float()
                probs = torch.softmax(logits / temp, dim=1).cpu()
            except torch.cuda.OutOfMemoryError:
                if len(b) == 1:
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                batch_size = self._oom_batch_size = max(1, len(b) // 2)
                progress(f"GPU out of memory with {len(b)} reads per batch; "
                         f"retrying with batch_size {batch_size}")
                rest = [i for bb in [b] + pending for i in bb]
                pending = [rest[i:i + batch_size]
                           for i in range(0, len(rest), batch_size)]
                continue
            yield b, probs

    def predict_proba(self, seqs: Sequence[str], batch_size="auto",
                      device: str = "auto") -> np.ndarray:
        """Leaf probabilities (n, n_leaves) for cleaned, oriented reads;
        column j is the lineage ``labels.leaves[j]``."""
        self._check_fitted()
        dev = configure(device)
        batch_size = classify_batch_size(batch_size, dev)
        self.net.to(dev).eval()
        seqs = list(seqs)
        out = np.empty((len(seqs), len(self.labels.leaves)), dtype=np.float32)
        for b, probs in self._prob_batches(seqs, batch_size, dev):
            out[b] = probs.numpy()
        return out

    def predict(self, records: Iterable[Tuple[str, str]],
                confidence="auto",
                read_orientation: str = "auto", batch_size="auto",
                device: str = "auto", n_threads: int = 0,
                chunk_size: int = 8192, progress=log
                ) -> Iterator[Tuple[str, str, float]]:
        """Stream ``(id, taxon, confidence)`` for ``(id, sequence)`` records.

        Reads are processed ``chunk_size`` at a time, so memory does not
        grow with the input. ``confidence=None`` disables truncation;
        ``"auto"`` uses the threshold that maximised right calls on the
        validation split (``calibration["best_confidence"]``,
        ``DEFAULT_CONFIDENCE`` if the classifier was trained without
        validation).
        Empty reads and reads shorter than MIN_READ_LENGTH bp are
        ``Unassigned`` with confidence 0; invalid characters raise.
        """
        self._check_fitted()
        if confidence == "auto":
            confidence = self.calibration.get("best_confidence",
                                              DEFAULT_CONFIDENCE)
        if confidence is not None and not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1] or disabled, "
                             f"not {confidence}.")
        dev = configure(device, n_threads)
        batch_size = classify_batch_size(batch_size, dev)
        self.net.to(dev).eval()
        l2c = torch.as_tensor(self.labels.leaf_to_class)
        n_done, t0, seen_ids = 0, time.time(), SeenIds()
        for chunk in batched(records, chunk_size):
            ids = [rid for rid, _ in chunk]
            seen_ids.add(ids)
            seqs = [clean_sequence(s, rid) for rid, s in chunk]
            ok = [i for i, s in enumerate(seqs) if len(s) >= MIN_READ_LENGTH]
            good = orient([seqs[i] for i in ok], read_orientation,
                          self.orienter)
            results = [(UNASSIGNED, 0.0)] * len(seqs)
            for b, probs in self._prob_batches(good, batch_size, dev,
                                               progress):
                chosen, conf = hierarchical_walk(probs, l2c,
                                                 self.labels.n_classes)
                calls = truncate(chosen.numpy(), conf.numpy(),
                                 self.labels.classes, confidence)
                for j, call in zip(b, calls):
                    results[ok[j]] = call
            for rid, (taxon, c) in zip(ids, results):
                yield rid, taxon, c
            n_done += len(chunk)
            progress(f"classified {n_done} reads "
                     f"({n_done / max(time.time() - t0, 1e-9):.0f} reads/s)")
