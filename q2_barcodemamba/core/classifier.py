"""scikit-learn-style classifier object: ``fit`` / ``predict`` /
``predict_proba``, deterministic given ``random_seed``.

This ties together tokenizer, labels, network, orientation and calibration;
saving and loading live in :mod:`.io`.
"""
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .config import (DEFAULT_PRESET, FINETUNE_LR, MIN_READ_LENGTH,
                     SCRATCH_LR, ModelConfig, TrainConfig, preset)
from .data import (KmerOrienter, SeenIds, batched, clean_sequence,
                   length_batches, orient, token_batches)
from .abstention import Caller
from .augment import AugmentConfig
from .heads import targets
from .inference import DEFAULT_CONFIDENCE, UNASSIGNED, HeadLogits, truncate
from .memory import ReferenceMemory
from .regions import alternatives, cut_reference
from .runtime import (autocast, configure, log, pad_batch, release_memory,
                      resolve_precision)
from .split import grouped_split, hold_out_genera
from .taxonomy import (LabelEncoder, parse_taxonomy, split_lineage,
                       warn_conflicts)
from .tokenizer import DNATokenizer
from .train import fit_network, variant_tokens
from .validation import Rows, Validation


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
    ``tokenizer``, ``labels``, ``net``, ``orienter``, ``memory`` (the
    reference memory, None when turned off), ``calibration`` and
    ``summary`` are set; :func:`.io.save_classifier` writes them.
    """

    def __init__(self, preset_name: str = DEFAULT_PRESET,
                 model_config: Optional[ModelConfig] = None,
                 train_config: Optional[TrainConfig] = None):
        self.preset_name = preset_name
        self.model_config = model_config
        self.train_config = train_config or TrainConfig()
        self.tokenizer = self.labels = self.net = self.orienter = None
        self.memory: Optional[ReferenceMemory] = None
        self.calibration: dict = {"temperature": 1.0}
        self.summary: dict = {}
        self.backbone_info: Optional[dict] = None
        self._oom_batch_size = None  # set after a CUDA out-of-memory retry
        self.query_pair: Optional[dict] = None  # set by fit (query_region)

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

        The network learns from the training part of a leakage-free split;
        the validation part (new haplotypes, unseen species, unseen
        genera) chooses the epoch, the temperature, the neighbour mixture,
        the calibrator and the threshold, with a reference memory of the
        training reads only (cross-fitting). The saved memory then holds
        every reference read.
        """
        tc = self.train_config.validate()
        if tc.learning_rate is None:
            tc = self.train_config = replace(
                tc, learning_rate=FINETUNE_LR if backbone is not None
                else SCRATCH_LR)
        t_start = time.time()
        seqs = check_reference(ids, seqs, taxonomy, tc.min_length, progress)
        seqs = self._query_region(seqs, progress)
        lineages = parse_taxonomy(ids, [taxonomy[i] for i in ids])
        warn_conflicts(lineages)
        # classes come from all reads, so the memory (and a refit) know the
        # held-out species too; validation targets only know training taxa
        self.labels = LabelEncoder.fit(
            lineages, len(split_lineage(taxonomy[ids[0]])))
        n_ranks = len(self.labels.rank_names)
        train_idx, val_idx = self._split(seqs, lineages, n_ranks, progress)
        cfg, init_state = self._start(backbone, seqs, progress)
        y = targets(self.labels, lineages)                    # (n, R + 1)
        # rows: every read, then the amplicons cut from them (regions.py);
        # the network trains on reads, memory and validation use both
        rows = Rows(seqs, tc, val_idx, progress)
        tokens = self.tokenizer.encode(rows.seqs, tc.max_length)
        y_rows, lin_rows = y[rows.parent], [lineages[i] for i in rows.parent]
        tr_rows, va_rows = rows.of(train_idx, memory=True), rows.of(val_idx)
        val = Validation(self, rows.seqs, lin_rows, y_rows, tr_rows,
                          va_rows, progress)
        net, history = fit_network(
            cfg, tc, self.labels, [tokens[i] for i in train_idx],
            y[train_idx], [tokens[i] for i in va_rows], y_rows[va_rows],
            progress, init_state=init_state,
            score=val.score if len(val_idx) else None,
            variants=self._variants(seqs, train_idx))
        self.net = net.cpu()
        z, _ = self._embed_all(tokens, logits=False)
        self.calibration = val.calibrate(self.net, z, progress)
        best_epoch = refit_epochs(history)
        if len(val_idx) and tc.refit:
            history = history + self._refit(
                cfg, tokens[:len(seqs)], y, best_epoch, init_state,
                progress)
            z, _ = self._embed_all(tokens, logits=False)
        m = rows.n_memory
        self.memory = (ReferenceMemory.build(z[:m], y_rows[:m, -1],
                                             rows.seqs[:m])
                       if tc.memory else None)
        self.orienter = KmerOrienter.fit(seqs)
        self.summary = {
            "n_reference_reads": len(seqs), "n_train": int(len(train_idx)),
            "n_validation": int(len(val_idx)), "best_epoch": best_epoch,
            "classes_per_rank": dict(zip(self.labels.rank_names,
                                         self.labels.n_classes)),
            "n_leaves": len(self.labels.leaves),
            "n_parameters": self.net.num_parameters(),
            "memory_reads": len(self.memory) if self.memory else 0,
            "region_cutouts": rows.counts,
            "query_region": self.query_pair,
            "read_length_range": [int(min(map(len, rows.seqs[:m]))),
                                  int(max(map(len, rows.seqs[:m])))],
            "history": history, "train_seconds": time.time() - t_start,
            "heads": tc.heads, "backbone": self.backbone_info,
        }
        return self

    def _query_region(self, seqs: List[str], progress) -> List[str]:
        """The reference cut to ``query_region``'s amplicon (reads where it
        is not found are kept whole); unchanged for "any"."""
        tc = self.train_config
        self.query_pair = None
        if tc.query_region.lower() == "any":
            return seqs
        cut, n_cut, pair = cut_reference(seqs, tc.query_region,
                                         tc.min_length)
        self.query_pair = pair.to_dict()
        progress(f"query region {pair.name}: cut {n_cut} of {len(seqs)} "
                 f"reference reads to the amplicon; "
                 f"{len(seqs) - n_cut} kept whole (no primer site found)")
        return cut

    def _split(self, seqs, lineages, n_ranks: int, progress):
        """Training and validation indices: :func:`.split.grouped_split`
        (new haplotypes, unseen species) plus whole genera
        (:func:`.split.hold_out_genera`)."""
        tc = self.train_config
        train_idx, val_idx = grouped_split(seqs, lineages,
                                           tc.validation_fraction,
                                           seed=tc.random_seed)
        n_held = len(val_idx)
        if len(val_idx) and tc.unseen_genus_fraction > 0 and n_ranks > 2:
            train_idx, val_idx = hold_out_genera(
                lineages, train_idx, val_idx, tc.unseen_genus_fraction,
                tc.random_seed, rank=n_ranks - 2)
        progress(f"reference: {len(seqs)} reads; training on "
                 f"{len(train_idx)}, validating on {len(val_idx)} held-out "
                 f"haplotypes and species ({len(val_idx) - n_held} of them "
                 "of held-out genera)")
        return train_idx, val_idx

    def _variants(self, seqs: Sequence[str], train_idx: np.ndarray):
        tc = self.train_config
        region_p = tc.region_augment if tc.query_region.lower() == "any" \
            else 0.0
        if tc.augment <= 0 and region_p <= 0:
            return None
        aug = AugmentConfig(p=tc.augment, min_length=tc.min_length).validate()
        train = [seqs[i] for i in train_idx]
        alts = alternatives(train, tc.min_length) if region_p > 0 else None
        return variant_tokens(train, self.tokenizer, tc.max_length, aug,
                              tc.random_seed, alts, region_p)

    def _embed_all(self, tokens, logits: bool = True
                   ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Embeddings (n, D) and (with ``logits``) leaf logits
        (n, n_leaf) of token lists. Fitting asks for the embeddings only:
        n x n_leaf floats are 7 GiB for a UNITE ITS2 reference."""
        dev = configure(self.train_config.device, self.train_config.n_threads)
        self.net.to(dev).eval()
        n = len(tokens)
        z = torch.empty((n, self.net.cfg.d_model))
        out = torch.empty((n, self.net.n_classes[-1])) if logits else None
        for b, zb, lb in self._forward_batches(tokens, 0 if dev.type == "cpu"
                                               else GPU_BATCH, dev,
                                               logits=logits):
            z[b] = zb.float().cpu()
            if logits:
                out[b] = lb
        self.net.cpu()
        return z, out

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
        net, history = fit_network(
            cfg, replace(self.train_config, epochs=epochs), self.labels,
            tokens, y, [], y[:0], progress, init_state=init_state)
        self.net = net.cpu()
        return [{**h, "refit": True} for h in history]

    # ---------------------------------------------------------- prediction
    def _check_fitted(self):
        if self.net is None:
            raise ValueError("This classifier has not been fitted.")

    @torch.no_grad()
    def _forward_batches(self, tokens: Sequence[Sequence[int]],
                         batch_size: int, device, progress=log,
                         logits: bool = True, bf16: bool = False,
                         on_batch=None
                         ) -> Iterator[Tuple[List[int], torch.Tensor,
                                             Optional[torch.Tensor]]]:
        """Yield (indices, embeddings (B, D) on ``device``, leaf logits
        (B, n_leaf) float32 on CPU) over length-sorted batches of the
        token lists; ``batch_size`` 0 caps batches by padded tokens
        (``"auto"`` on a CPU).

        On CUDA out-of-memory the batch size is halved and the batch retried
        (down to 1), with a message; the smaller size is kept afterwards.
        """
        lengths = [len(t) for t in tokens]
        if batch_size == 0:                   # "auto" on a CPU
            pending = token_batches(lengths, CPU_BATCH_TOKENS, CPU_MAX_BATCH)
        else:
            batch_size = min(batch_size, self._oom_batch_size or batch_size)
            pending = length_batches(lengths, batch_size)
        while pending:
            b = pending.pop(0)
            if on_batch is not None:     # e.g. start work that needs no net
                on_batch(b)
            try:
                tok, mask = pad_batch([tokens[i] for i in b], device)
                with autocast(device, bf16):
                    z = self.net.embed(tok, mask)
                    lg = self.net.heads[-1](z) if logits else None
                z = z.float()
                lg = lg.float().cpu() if logits else None
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
            yield b, z, lg

    def _caller(self) -> Caller:
        """Calls and confidences from network outputs: the learned
        abstention of this classifier, or for a format-1 classifier (no
        memory, no calibrator) the summed probabilities at its
        temperature."""
        return Caller(self.calibration, self.labels, self.memory)

    def _prepare(self, chunk, read_orientation: str
                 ) -> Tuple[List[str], List[int], List[str]]:
        """Cleaned reads of ``(id, seq)`` records, the indices of those
        long enough to classify and those reads oriented."""
        seqs = [clean_sequence(s, rid) for rid, s in chunk]
        ok = [i for i, s in enumerate(seqs) if len(s) >= MIN_READ_LENGTH]
        return seqs, ok, orient([seqs[i] for i in ok], read_orientation,
                                self.orienter)

    def _prepared(self, records, chunk_size: int, read_orientation: str,
                  background: bool):
        """(chunk, cleaned reads, kept indices, oriented reads, tokens) per
        chunk of ``records``; with ``background`` the next chunk is
        prepared in a worker thread while the caller handles this one.
        Errors surface in chunk order either way."""
        max_length = self.train_config.max_length

        def prepare(chunk):
            seqs, ok, good = self._prepare(chunk, read_orientation)
            return chunk, seqs, ok, good, self.tokenizer.encode(good,
                                                                max_length)
        if not background:
            for chunk in batched(records, chunk_size):
                yield prepare(chunk)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for chunk in batched(records, chunk_size):
                job = pool.submit(prepare, chunk)
                if pending is not None:
                    yield pending.result()
                pending = job
            if pending is not None:
                yield pending.result()

    def predict_proba(self, seqs: Sequence[str], batch_size="auto",
                      device: str = "auto",
                      read_orientation: str = "auto",
                      precision: str = "fp32") -> np.ndarray:
        """Lineage probabilities (n, n_leaves) that ``predict`` walks:
        the network's (temperature-scaled) mixed with the votes of the
        nearest reference reads. Reads are cleaned and oriented as in
        ``predict``; reads shorter than MIN_READ_LENGTH bp get a row of
        zeros. Column j is the lineage ``labels.leaves[j]``."""
        self._check_fitted()
        dev = configure(device)
        batch_size = classify_batch_size(batch_size, dev)
        self.net.to(dev).eval()
        caller = self._caller()
        records = [(str(i), s) for i, s in enumerate(seqs)]
        out = np.zeros((len(records), len(self.labels.leaves)),
                       dtype=np.float32)
        _, ok, good = self._prepare(records, read_orientation)
        tokens = self.tokenizer.encode(good, self.train_config.max_length)
        bf16 = resolve_precision(precision, dev)
        for b, z, logits in self._forward_batches(tokens, batch_size, dev,
                                                  bf16=bf16):
            p, _, _ = caller.probs([good[i] for i in b], z, logits)
            out[[ok[i] for i in b]] = p.numpy()
        return out

    def predict_ranks(self, seqs: Sequence[str], batch_size="auto",
                      device: str = "auto", read_orientation: str = "auto",
                      precision: str = "fp32"
                      ) -> Tuple[np.ndarray, np.ndarray]:
        """Per-rank calls before truncation: chosen class index (n, R)
        (-1 below the deepest rank reached, and for reads shorter than
        MIN_READ_LENGTH bp) and its confidence (n, R), as ``predict``
        computes them (the reported ``Confidence`` is the one of the
        deepest rank kept)."""
        self._check_fitted()
        dev = configure(device)
        batch_size = classify_batch_size(batch_size, dev)
        self.net.to(dev).eval()
        caller = self._caller()
        R = len(self.labels.rank_names)
        chosen = np.full((len(seqs), R), -1, dtype=np.int64)
        conf = np.zeros((len(seqs), R))
        _, ok, good = self._prepare([(str(i), s) for i, s in enumerate(seqs)],
                                    read_orientation)
        tokens = self.tokenizer.encode(good, self.train_config.max_length)
        bf16 = resolve_precision(precision, dev)
        head = self.net.heads[-1]
        for b, z, _ in self._forward_batches(tokens, batch_size, dev,
                                             logits=False, bf16=bf16):
            rows = [ok[i] for i in b]
            chosen[rows], conf[rows] = caller([good[i] for i in b], z,
                                              HeadLogits(z, head, bf16))
        return chosen, conf

    def predict(self, records: Iterable[Tuple[str, str]],
                confidence="auto",
                read_orientation: str = "auto", batch_size="auto",
                device: str = "auto", n_threads: int = 0,
                chunk_size: int = 8192, progress=log,
                prefetch: Optional[bool] = None, precision: str = "fp32"
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
        ``prefetch`` (None: on a GPU, off on a CPU, where the threads
        compete with the network's for the cores and it measured 3-10 %
        slower on 2 cores): clean, orient and tokenise the next chunk,
        and run each batch's k-mer neighbour search (it needs no network
        output), in background threads while the network runs (numpy and
        the tokenizer release the GIL). Same calls either way.
        ``precision``: ``fp32`` or ``bf16`` (the network under bfloat16
        autocast; :func:`.runtime.resolve_precision`).
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
        caller = self._caller()
        if prefetch is None:
            prefetch = dev.type == "cuda"
        bf16 = resolve_precision(precision, dev)
        pool = None
        if prefetch and caller.n_kmer:
            caller.memory.index, caller.memory.kmers  # built once, here
            pool = ThreadPoolExecutor(max_workers=1)
        try:
            yield from self._predict_chunks(
                records, chunk_size, read_orientation, prefetch, caller,
                batch_size, dev, bf16, confidence, pool, progress)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _predict_chunks(self, records, chunk_size, read_orientation,
                        prefetch, caller, batch_size, dev, bf16,
                        confidence, pool, progress):
        n_done, t0, seen_ids = 0, time.time(), SeenIds()
        for chunk, seqs, ok, good, tokens in self._prepared(
                records, chunk_size, read_orientation, prefetch):
            ids = [rid for rid, _ in chunk]
            seen_ids.add(ids)
            results = [(UNASSIGNED, 0.0)] * len(seqs)
            jobs = {}

            def start(b, good=good, jobs=jobs):
                # the k-mer search of batch b beside its forward pass
                jobs[b[0]] = pool.submit(caller.kmer_neighbours,
                                         [good[i] for i in b])
            for b, z, _ in self._forward_batches(
                    tokens, batch_size, dev, progress, logits=False,
                    bf16=bf16, on_batch=start if pool is not None else None):
                kmer = jobs.pop(b[0]).result() if pool is not None else None
                # the leaf head runs block by block inside the caller
                chosen, conf = caller([good[i] for i in b], z, HeadLogits(
                    z, self.net.heads[-1], bf16), kmer)
                calls = truncate(chosen, conf, self.labels.classes,
                                 confidence)
                for j, call in zip(b, calls):
                    results[ok[j]] = call
            for rid, (taxon, c) in zip(ids, results):
                yield rid, taxon, c
            release_memory()
            n_done += len(chunk)
            progress(f"classified {n_done} reads "
                     f"({n_done / max(time.time() - t0, 1e-9):.0f} reads/s)")
