"""scikit-learn-style classifier object: ``fit`` / ``predict`` /
``predict_proba``, deterministic given ``random_seed``.

This ties together tokenizer, labels, network, orientation and calibration;
prediction lives in :mod:`.predict`, saving and loading in :mod:`.io`.
"""
import time
from dataclasses import replace
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .config import (DEFAULT_PRESET, FINETUNE_LR, SCRATCH_LR, ModelConfig,
                     TrainConfig, preset)
from .data import KmerOrienter, clean_sequence
from .augment import AugmentConfig
from .heads import targets
from .memory import ReferenceMemory
# classify's batch sizes and classify_batch_size are re-exported from here
from .predict import (CPU_BATCH_TOKENS, CPU_MAX_BATCH,  # noqa: F401
                      GPU_BATCH, Predictor, classify_batch_size)
from .regions import alternatives, cut_reference
from .runtime import configure, log
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


class TaxonomicClassifier(Predictor):
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
        # the validation reads' walk, evidence and kinds for the shipped
        # mixture (novelty.refit_for_novelty); None before format 3
        self.evidence: Optional[dict] = None
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
        seqs, lineages = self._reference(ids, seqs, taxonomy, progress)
        warn_conflicts(lineages)
        # classes come from all reads, so the memory (and a refit) know the
        # held-out species too; validation targets only know training taxa
        self.labels = LabelEncoder.fit(
            lineages, len(split_lineage(taxonomy[ids[0]])))
        n_ranks = len(self.labels.rank_names)
        train_idx, val_idx = self._split(seqs, lineages, n_ranks, progress)
        cfg, init_state = self._start(backbone, seqs, progress)
        y, rows, val = self._validation(seqs, lineages, train_idx, val_idx,
                                        progress)
        tokens = self.tokenizer.encode(rows.seqs, tc.max_length)
        va_rows = rows.of(val_idx)
        net, history = fit_network(
            cfg, tc, self.labels, [tokens[i] for i in train_idx],
            y[train_idx], [tokens[i] for i in va_rows],
            y[rows.parent[va_rows]],
            progress, init_state=init_state,
            score=val.score if len(val_idx) else None,
            variants=self._variants(seqs, train_idx))
        self.net = net.cpu()
        z, _ = self._embed_all(tokens, logits=False)
        self.calibration = val.calibrate(self.net, z, progress)
        self.evidence = val.evidence or None
        best_epoch = refit_epochs(history)
        if len(val_idx) and tc.refit:
            history = history + self._refit(
                cfg, tokens[:len(seqs)], y, best_epoch, init_state,
                progress)
            z, _ = self._embed_all(tokens, logits=False)
        self.memory = self._memory(z, rows, y)
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
            "read_length_range": [
                min(map(len, rows.seqs[:rows.n_memory])),
                max(map(len, rows.seqs[:rows.n_memory]))],
            "history": history, "train_seconds": time.time() - t_start,
            "heads": tc.heads, "backbone": self.backbone_info,
        }
        return self

    def _reference(self, ids, seqs, taxonomy, progress
                   ) -> Tuple[List[str], List[tuple]]:
        """The checked reference reads cut to the query region, and their
        lineages."""
        seqs = check_reference(ids, seqs, taxonomy,
                               self.train_config.min_length, progress)
        return (self._query_region(seqs, progress),
                parse_taxonomy(ids, [taxonomy[i] for i in ids]))

    def _validation(self, seqs, lineages, train_idx, val_idx, progress
                    ) -> Tuple[np.ndarray, Rows, Validation]:
        """Targets of the reads (n, R + 1), the rows of memory and
        validation (every read, then the amplicons cut from them, then the
        validation copies with errors: :class:`.validation.Rows`) and the
        :class:`.validation.Validation` of the split. The network trains
        on reads; memory and validation use the rows. Fitting and
        ``benchmarks.accuracy.recalibrate`` both come through here."""
        y = targets(self.labels, lineages)
        rows = Rows(seqs, self.train_config, val_idx, progress)
        val = Validation(self, rows.seqs, [lineages[i] for i in rows.parent],
                         y[rows.parent], rows.of(train_idx, memory=True),
                         rows.of(val_idx), progress)
        return y, rows, val

    def _memory(self, z: torch.Tensor, rows: Rows, y: np.ndarray
                ) -> Optional[ReferenceMemory]:
        """The reference memory of the rows' embeddings ``z`` (reads and
        amplicons, no copies with errors); None when turned off."""
        if not self.train_config.memory:
            return None
        m = rows.n_memory
        return ReferenceMemory.build(z[:m], y[rows.parent[:m], -1],
                                     rows.seqs[:m])

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

    def _check_fitted(self):
        if self.net is None:
            raise ValueError("This classifier has not been fitted.")
