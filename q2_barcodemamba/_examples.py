"""Artifact factories of the usage examples (the examples themselves sit
with their action's registration: _method_registration.py,
_visualizer_registration.py; shown by ``--help``, rendered for the CLI and
Artifact API, executed by the tests).

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
