"""Classify with a fitted :class:`.classifier.TaxonomicClassifier`:
``predict`` (streamed calls), ``predict_ranks`` (per-rank calls before
truncation) and ``predict_proba`` (lineage probabilities), and the network
passes over batches of tokens that fitting uses as well.

Per chunk of reads: clean, orient and tokenise (:mod:`.data`), the network
on length-sorted batches, then the caller (:class:`.abstention.Caller`):
neighbours in the reference memory, mixture, walk and calibrator, block by
block of rows (:func:`.abstention.walk_rows`).
"""
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .abstention import Caller
from .config import MIN_READ_LENGTH
from .data import (SeenIds, batched, clean_sequence, length_batches, orient,
                   token_batches)
from .inference import DEFAULT_CONFIDENCE, UNASSIGNED, HeadLogits, truncate
from .novelty import calibration_for
from .runtime import (autocast, configure, log, pad_batch, release_memory,
                      resolve_precision)

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


class Predictor:
    """Prediction methods of :class:`.classifier.TaxonomicClassifier`
    (which sets ``tokenizer``, ``labels``, ``net``, ``orienter``,
    ``memory``, ``calibration``, ``train_config``, ``_oom_batch_size`` and
    ``_check_fitted``)."""

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

    def _head_logits(self, z: torch.Tensor, bf16: bool) -> HeadLogits:
        """The leaf head on ``z``, chunk by chunk, with the genus head
        (multi-head networks) for a caller that shortlists lineages."""
        R = len(self.labels.rank_names)
        heads = self.net.heads
        parent = heads[R - 2] if R >= 2 and len(heads) == R + 1 else None
        return HeadLogits(z, heads[-1], bf16, parent)

    def _caller(self, calibration: Optional[dict] = None) -> Caller:
        """Calls and confidences from network outputs: the learned
        abstention of this classifier (or ``calibration``), or for a
        format-1 classifier (no memory, no calibrator) the summed
        probabilities at its temperature."""
        return Caller(calibration or self.calibration, self.labels,
                      self.memory)

    def calibration_for(self, novel_species: Optional[float] = None,
                        novel_genera: Optional[float] = None,
                        progress=None) -> dict:
        """The calibration that classifies: the fitted one, or with
        ``novel_species`` (the share of queries expected from species
        missing in the reference; ``novel_genera``: from genera missing in
        it) the one chosen again on the classifier's validation reads
        weighted to that mix, unless both shares are within
        :data:`.novelty.MIN_MIX_SHIFT` of the validation split's
        (:func:`.novelty.calibration_for`)."""
        return calibration_for(self.calibration, self.evidence,
                               self.train_config.abstention, novel_species,
                               novel_genera, progress)

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
                      precision: str = "fp32",
                      novel_species: Optional[float] = None,
                      novel_genera: Optional[float] = None
                      ) -> Tuple[np.ndarray, np.ndarray]:
        """Per-rank calls before truncation: chosen class index (n, R)
        (-1 below the deepest rank reached, and for reads shorter than
        MIN_READ_LENGTH bp) and its confidence (n, R), as ``predict``
        computes them (the reported ``Confidence`` is the one of the
        deepest rank kept; ``novel_species``/``novel_genera``: as in
        ``predict``)."""
        self._check_fitted()
        dev = configure(device)
        batch_size = classify_batch_size(batch_size, dev)
        self.net.to(dev).eval()
        caller = self._caller(self.calibration_for(novel_species,
                                                   novel_genera))
        R = len(self.labels.rank_names)
        chosen = np.full((len(seqs), R), -1, dtype=np.int64)
        conf = np.zeros((len(seqs), R))
        _, ok, good = self._prepare([(str(i), s) for i, s in enumerate(seqs)],
                                    read_orientation)
        tokens = self.tokenizer.encode(good, self.train_config.max_length)
        bf16 = resolve_precision(precision, dev)
        for b, z, _ in self._forward_batches(tokens, batch_size, dev,
                                             logits=False, bf16=bf16):
            rows = [ok[i] for i in b]
            chosen[rows], conf[rows] = caller([good[i] for i in b], z,
                                              self._head_logits(z, bf16))
        return chosen, conf

    def predict(self, records: Iterable[Tuple[str, str]],
                confidence="auto",
                read_orientation: str = "auto", batch_size="auto",
                device: str = "auto", n_threads: int = 0,
                chunk_size: int = 8192, progress=log,
                prefetch: Optional[bool] = None, precision: str = "fp32",
                novel_species: Optional[float] = None,
                novel_genera: Optional[float] = None
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
        ``novel_species`` (None: the mix of the validation split): the
        share of the queries expected from species missing in the
        reference, ``novel_genera`` from genera missing in it (None: in
        the validation split's proportion); the confidence kind,
        calibrator and ``"auto"`` threshold are then chosen again on the
        validation reads weighted to that mix (:meth:`calibration_for`).
        """
        self._check_fitted()
        calibration = self.calibration_for(novel_species, novel_genera,
                                           progress)
        if confidence == "auto":
            confidence = calibration.get("best_confidence",
                                         DEFAULT_CONFIDENCE)
        if confidence is not None and not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1] or disabled, "
                             f"not {confidence}.")
        dev = configure(device, n_threads)
        batch_size = classify_batch_size(batch_size, dev)
        self.net.to(dev).eval()
        caller = self._caller(calibration)
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
                chosen, conf = caller([good[i] for i in b], z,
                                      self._head_logits(z, bf16), kmer)
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
