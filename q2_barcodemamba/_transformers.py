"""Transformers between the directory formats and core objects."""
from .core.classifier import TaxonomicClassifier
from .core.io import (load_backbone, load_classifier, write_backbone_files,
                      write_classifier_files)
from .core.backbones import PretrainedBackbone
from ._formats import BarcodeMambaBackboneDirFmt, BarcodeMambaClassifierDirFmt
from .plugin_setup import plugin


@plugin.register_transformer
def _1(data: TaxonomicClassifier) -> BarcodeMambaClassifierDirFmt:
    ff = BarcodeMambaClassifierDirFmt()
    write_classifier_files(data, str(ff.path))
    return ff


@plugin.register_transformer
def _2(ff: BarcodeMambaClassifierDirFmt) -> TaxonomicClassifier:
    return load_classifier(str(ff.path))


@plugin.register_transformer
def _3(data: PretrainedBackbone) -> BarcodeMambaBackboneDirFmt:
    ff = BarcodeMambaBackboneDirFmt()
    write_backbone_files(data, str(ff.path))
    return ff


@plugin.register_transformer
def _4(ff: BarcodeMambaBackboneDirFmt) -> PretrainedBackbone:
    return load_backbone(str(ff.path))
