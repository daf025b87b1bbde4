"""Transformers between the classifier directory format and core objects."""
from .core.classifier import TaxonomicClassifier
from .core.io import load_classifier, write_classifier_files
from ._formats import BarcodeMambaClassifierDirFmt
from .plugin_setup import plugin


@plugin.register_transformer
def _1(data: TaxonomicClassifier) -> BarcodeMambaClassifierDirFmt:
    ff = BarcodeMambaClassifierDirFmt()
    write_classifier_files(data, str(ff.path))
    return ff


@plugin.register_transformer
def _2(ff: BarcodeMambaClassifierDirFmt) -> TaxonomicClassifier:
    return load_classifier(str(ff.path))
