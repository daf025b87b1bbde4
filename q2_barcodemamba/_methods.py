"""Thin QIIME 2 actions: QIIME views in, core calls, QIIME views out."""
import pandas as pd
from q2_types.feature_data import DNAFASTAFormat, TSVTaxonomyFormat

from .core.classifier import TaxonomicClassifier
from .core.config import TrainConfig
from .core.data import read_fasta


def fit_classifier(reference_reads: DNAFASTAFormat,
                   reference_taxonomy: pd.Series,
                   preset: str = "tiny", epochs: int = 20,
                   batch_size: int = 32, learning_rate: float = 3e-3,
                   max_length: int = 512, validation_fraction: float = 0.1,
                   refit: bool = True, hls_epsilon: float = 0.0,
                   class_weight_power: float = 0.0, random_seed: int = 0, device: str = "auto",
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
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size,
                       learning_rate=learning_rate, max_length=max_length,
                       validation_fraction=validation_fraction, refit=refit,
                       hls_epsilon=hls_epsilon,
                       class_weight_power=class_weight_power,
                       random_seed=random_seed, device=device,
                       n_threads=n_threads)
    clf = TaxonomicClassifier(preset, train_config=tcfg)
    return clf.fit(ids, seqs, taxonomy.to_dict())


def classify(reads: DNAFASTAFormat, classifier: TaxonomicClassifier,
             confidence: object = "auto", read_orientation: str = "auto",
             batch_size: int = 256, device: str = "auto",
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
