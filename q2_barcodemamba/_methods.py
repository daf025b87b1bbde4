"""Thin QIIME 2 actions: QIIME views in, core calls, QIIME views out."""
import pandas as pd
from q2_types.feature_data import DNAFASTAFormat, TSVTaxonomyFormat

from .core.backbones import shipped_backbone
from .core.classifier import TaxonomicClassifier
from .core.config import TrainConfig
from .core.data import read_fasta
from .core.pretrain import PretrainConfig, PretrainedBackbone
from .core.pretrain import pretrain as _pretrain
from .core.train import log


def pretrain(sequences: DNAFASTAFormat, preset: str = "tiny",
             epochs: int = 15, batch_size: int = 64,
             learning_rate: float = 8e-4, max_length: int = 512,
             vocab_size: int = 1024, checkpoint_dir: str = None,
             random_seed: int = 0, device: str = "auto",
             n_threads: int = 0) -> PretrainedBackbone:
    ids, seqs = [], []
    for rid, seq in read_fasta(str(sequences)):
        ids.append(rid)
        seqs.append(seq)
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
                   preset: str = "tiny", pretrained: bool = True,
                   epochs: int = 20, batch_size: int = 32,
                   learning_rate: object = "auto",
                   max_length: int = 512, validation_fraction: float = 0.1,
                   refit: bool = True, heads: str = "multi",
                   hls_epsilon: float = 0.0,
                   class_weight_power: float = 0.0, random_seed: int = 0,
                   device: str = "auto",
                   n_threads: int = 0) -> TaxonomicClassifier:
    ids, seqs = [], []
    for rid, seq in read_fasta(str(reference_reads)):
        ids.append(rid)
        seqs.append(seq)
    taxonomy = reference_taxonomy.astype(str)
    if taxonomy.index.duplicated().any():
        dup = list(taxonomy.index[taxonomy.index.duplicated()][:5])
        raise ValueError(f"The reference taxonomy lists some ids more than "
                         f"once, e.g. {dup}; ids must be unique.")
    lr = None if learning_rate == "auto" else float(learning_rate)
    if backbone is None and pretrained:
        backbone = shipped_backbone(preset)  # None for presets without one
        if backbone is None:
            log(f"no pretrained backbone ships for preset {preset!r}: "
                "training from scratch (pretrain one with 'qiime "
                "barcodemamba pretrain' and pass it with --i-backbone)")
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size,
                       learning_rate=lr, max_length=max_length, heads=heads,
                       validation_fraction=validation_fraction, refit=refit,
                       hls_epsilon=hls_epsilon,
                       class_weight_power=class_weight_power,
                       random_seed=random_seed, device=device,
                       n_threads=n_threads)
    clf = TaxonomicClassifier(preset, train_config=tcfg)
    return clf.fit(ids, seqs, taxonomy.to_dict(), backbone=backbone)


def classify(reads: DNAFASTAFormat, classifier: TaxonomicClassifier,
             confidence: object = "auto", read_orientation: str = "auto",
             batch_size: object = "auto", device: str = "auto",
             n_threads: int = 0) -> TSVTaxonomyFormat:
    threshold = (None if confidence == "disable" else confidence
                 if confidence == "auto" else float(confidence))
    out = TSVTaxonomyFormat()
    with out.open() as fh:
        fh.write("Feature ID\tTaxon\tConfidence\n")
        for rid, taxon, conf in classifier.predict(
                read_fasta(str(reads)), confidence=threshold,
                read_orientation=read_orientation, batch_size=batch_size,
                device=device, n_threads=n_threads):
            fh.write(f"{rid}\t{taxon}\t{conf:.6g}\n")
    return out
