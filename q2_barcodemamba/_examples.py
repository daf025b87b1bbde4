"""Usage examples of the methods (registered in _method_registration.py;
the visualizers' sit with their registration, _visualizer_registration.py)
and the artifact factories of every example. Examples are shown by
``--help``, rendered for the CLI and Artifact API and executed by the tests.

The factories build small real artifacts offline from the bundled yeast
ITS data (q2_barcodemamba/data): 300 reference reads of 6 genera.
"""
import functools
import os

import pandas as pd

DATA = os.path.join(os.path.dirname(__file__), "data")


@functools.lru_cache(maxsize=None)
def _example_reads():
    from .core.data import read_fasta, read_taxonomy
    tax = read_taxonomy(os.path.join(DATA,
                                     "its_full_cbs_yeasts.taxonomy.tsv.gz"))
    genera = ["g__Candida", "g__Cryptococcus", "g__Debaryomyces",
              "g__Kazachstania", "g__Pichia", "g__Saccharomyces"]
    recs = [(i, s) for i, s in read_fasta(
        os.path.join(DATA, "its_full_cbs_yeasts.fasta.gz"))
        if tax[i].split(";")[5] in genera]
    return recs[:300], {i: tax[i] for i, _ in recs[:300]}


def _reference_reads_factory():
    from qiime2 import Artifact
    recs, _ = _example_reads()
    return Artifact.import_data("FeatureData[Sequence]",
                                pd.Series(dict(recs)), pd.Series)


def _reference_taxonomy_factory():
    from qiime2 import Artifact
    _, tax = _example_reads()
    series = pd.Series(tax, name="Taxon")
    series.index.name = "Feature ID"
    return Artifact.import_data("FeatureData[Taxonomy]", series)


def _query_reads_factory():
    from qiime2 import Artifact
    recs, _ = _example_reads()
    return Artifact.import_data("FeatureData[Sequence]",
                                pd.Series(dict(recs[::10])), pd.Series)


def _classifier_factory():
    from qiime2.plugins import barcodemamba
    clf, = barcodemamba.methods.fit_classifier(
        reference_reads=_reference_reads_factory(),
        reference_taxonomy=_reference_taxonomy_factory(), epochs=1,
        n_threads=2)
    return clf


def _backbone_factory():
    from qiime2.plugins import barcodemamba
    backbone, = barcodemamba.methods.pretrain(
        sequences=_reference_reads_factory(), epochs=1, vocab_size=128,
        n_threads=2)
    return backbone


def pretrain_example(use):
    seqs = use.init_artifact("unlabelled_sequences",
                             _reference_reads_factory)
    backbone, = use.action(
        use.UsageAction(plugin_id="barcodemamba", action_id="pretrain"),
        use.UsageInputs(sequences=seqs, epochs=1, vocab_size=128),
        use.UsageOutputNames(backbone="backbone"))
    backbone.assert_output_type("BarcodeMambaBackbone")


def _fit_example(use, epochs: int, backbone: bool) -> None:
    reads = use.init_artifact("reference_reads", _reference_reads_factory)
    taxonomy = use.init_artifact("reference_taxonomy",
                                 _reference_taxonomy_factory)
    extra = ({"backbone": use.init_artifact("backbone", _backbone_factory)}
             if backbone else {})
    classifier, = use.action(
        use.UsageAction(plugin_id="barcodemamba",
                        action_id="fit_classifier"),
        use.UsageInputs(reference_reads=reads, reference_taxonomy=taxonomy,
                        **extra, epochs=epochs),
        use.UsageOutputNames(classifier="classifier"))
    classifier.assert_output_type("BarcodeMambaClassifier")


def fit_classifier_example(use):
    _fit_example(use, epochs=2, backbone=False)


def fit_classifier_from_backbone_example(use):
    _fit_example(use, epochs=1, backbone=True)


def classify_example(use):
    reads = use.init_artifact("reads", _query_reads_factory)
    classifier = use.init_artifact("classifier", _classifier_factory)
    classification, = use.action(
        use.UsageAction(plugin_id="barcodemamba", action_id="classify"),
        use.UsageInputs(reads=reads, classifier=classifier),
        use.UsageOutputNames(classification="classification"))
    classification.assert_output_type("FeatureData[Taxonomy]")
