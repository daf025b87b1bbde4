"""The q2-barcodemamba Plugin object: registrations only.

Types and formats are registered here; each action family is registered
together with its usage examples: the methods in _method_registration.py
(examples in _examples.py), the visualizers in
_visualizer_registration.py.
"""
import importlib

from qiime2.plugin import Citations, Plugin

from . import __version__
from ._formats import BarcodeMambaBackboneDirFmt, BarcodeMambaClassifierDirFmt
from ._types import BarcodeMambaBackbone, BarcodeMambaClassifier

citations = Citations.load("citations.bib", package="q2_barcodemamba")

plugin = Plugin(
    name="barcodemamba",
    version=__version__,
    website="https://arxiv.org/abs/2512.15931",
    package="q2_barcodemamba",
    description="Taxonomic classification of fungal ITS barcodes with "
                "BarcodeMamba+, a Mamba-2 state-space language model with "
                "one classification head per taxonomic rank.",
    short_description="BarcodeMamba+ fungal ITS classifier.",
    citations=[citations["barcodemamba_plus"]],
)

plugin.register_formats(BarcodeMambaClassifierDirFmt,
                        BarcodeMambaBackboneDirFmt)
plugin.register_semantic_types(BarcodeMambaClassifier, BarcodeMambaBackbone)
plugin.register_semantic_type_to_format(
    BarcodeMambaClassifier, artifact_format=BarcodeMambaClassifierDirFmt)
plugin.register_semantic_type_to_format(
    BarcodeMambaBackbone, artifact_format=BarcodeMambaBackboneDirFmt)

from ._method_registration import register_methods  # noqa: E402
register_methods(plugin, citations)

importlib.import_module("q2_barcodemamba._transformers")

from ._visualizer_registration import register_visualizers  # noqa: E402
register_visualizers(plugin, citations)
