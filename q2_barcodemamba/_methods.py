"""Thin QIIME 2 actions: QIIME views in, core calls, QIIME views out.

QIIME 2 registers each action by its Python signature, so the defaults are
written here, and read from the configuration dataclasses of
:mod:`.core.config` (the one place of every default).
"""
import pandas as pd
from q2_types.feature_data import DNAFASTAFormat, TSVTaxonomyFormat

from .core.backbones import PretrainedBackbone, choose_backbone
from .core.classifier import TaxonomicClassifier
from .core.config import DEFAULT_PRESET, PretrainConfig, TrainConfig
from .core.data import read_fasta, read_reads
from .core.pretrain import pretrain as _pretrain

_P, _T = PretrainConfig, TrainConfig


def pretrain(sequences: DNAFASTAFormat, preset: str = DEFAULT_PRESET,
             epochs: int = _P.epochs, batch_size: int = _P.batch_size,
             learning_rate: float = _P.learning_rate,
             max_length: int = _P.max_length,
             vocab_size: int = _P.vocab_size, checkpoint_dir: str = None,
             random_seed: int = _P.random_seed, device: str = _P.device,
             n_threads: int = _P.n_threads) -> PretrainedBackbone:
    ids, seqs = read_reads(str(sequences))
    pc = PretrainConfig(epochs=epochs, batch_size=batch_size,
                        learning_rate=learning_rate, max_length=max_length,
                        vocab_size=vocab_size, random_seed=random_seed,
                        device=device, n_threads=n_threads)
    bb = _pretrain(ids, seqs, preset, config=pc,
                   checkpoint_dir=checkpoint_dir or None)
    bb.info["name"] = f"pretrained:{preset}:{len(seqs)}-sequences"
    return bb


def fit_classifier(reference_reads: DNAFASTAFormat,
                   reference_taxonomy: pd.Series,
                   backbone: PretrainedBackbone = None,
                   preset: str = DEFAULT_PRESET, pretrained: bool = True,
                   epochs: int = _T.epochs, batch_size: int = _T.batch_size,
                   learning_rate: object = "auto",
                   max_length: int = _T.max_length,
                   validation_fraction: float = _T.validation_fraction,
                   refit: bool = _T.refit, heads: str = _T.heads,
                   hls_epsilon: float = _T.hls_epsilon,
                   class_weight_power: float = _T.class_weight_power,
                   reference_memory: bool = _T.memory,
                   kmer_similarity: bool = _T.kmer_similarity,
                   abstention: str = _T.abstention,
                   contrastive_weight: float = _T.contrastive_weight,
                   augment: float = _T.augment,
                   region_cutouts: bool = _T.region_cutouts,
                   region_augment: float = _T.region_augment,
                   query_region: str = _T.query_region,
                   validation_errors: float = _T.validation_errors,
                   select_epoch_by: str = _T.select,
                   unseen_genus_fraction: float = _T.unseen_genus_fraction,
                   random_seed: int = _T.random_seed,
                   precision: str = _T.precision,
                   device: str = _T.device,
                   n_threads: int = _T.n_threads) -> TaxonomicClassifier:
    ids, seqs = read_reads(str(reference_reads))
    taxonomy = reference_taxonomy.astype(str)
    if taxonomy.index.duplicated().any():
        dup = list(taxonomy.index[taxonomy.index.duplicated()][:5])
        raise ValueError(f"The reference taxonomy lists some ids more than "
                         f"once, e.g. {dup}; ids must be unique.")
    # "auto": the dataclass's None, i.e. the rate of the starting point
    lr = _T.learning_rate if learning_rate == "auto" else float(learning_rate)
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size,
                       learning_rate=lr, max_length=max_length, heads=heads,
                       validation_fraction=validation_fraction, refit=refit,
                       hls_epsilon=hls_epsilon,
                       class_weight_power=class_weight_power,
                       memory=reference_memory,
                       kmer_similarity=kmer_similarity,
                       abstention=abstention,
                       contrastive_weight=contrastive_weight,
                       augment=augment, select=select_epoch_by,
                       region_cutouts=region_cutouts,
                       region_augment=region_augment,
                       query_region=query_region,
                       validation_errors=validation_errors,
                       unseen_genus_fraction=unseen_genus_fraction,
                       random_seed=random_seed, device=device,
                       n_threads=n_threads, precision=precision)
    clf = TaxonomicClassifier(preset, train_config=tcfg)
    return clf.fit(ids, seqs, taxonomy.to_dict(),
                   backbone=choose_backbone(backbone, preset, pretrained))


def classify(reads: DNAFASTAFormat, classifier: TaxonomicClassifier,
             confidence: object = "auto", read_orientation: str = "auto",
             batch_size: object = "auto", precision: str = "fp32",
             device: str = _T.device,
             n_threads: int = _T.n_threads, novel_species: float = None,
             novel_genera: float = None) -> TSVTaxonomyFormat:
    threshold = (None if confidence == "disable" else confidence
                 if confidence == "auto" else float(confidence))
    out = TSVTaxonomyFormat()
    with out.open() as fh:
        fh.write("Feature ID\tTaxon\tConfidence\n")
        for rid, taxon, conf in classifier.predict(
                read_fasta(str(reads)), confidence=threshold,
                read_orientation=read_orientation, batch_size=batch_size,
                device=device, n_threads=n_threads, precision=precision,
                novel_species=novel_species, novel_genera=novel_genera):
            fh.write(f"{rid}\t{taxon}\t{conf:.6g}\n")
    return out
