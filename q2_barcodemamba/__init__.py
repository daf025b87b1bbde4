"""q2-barcodemamba: BarcodeMamba+ fungal ITS classification for QIIME 2.

The QIIME-free machine learning lives in :mod:`q2_barcodemamba.core`; the
plugin layer (types, formats, actions) is registered by
:mod:`q2_barcodemamba.plugin_setup` through the ``qiime2.plugins`` entry
point. Importing this package does not import QIIME 2.
"""
from ._version import __version__

__all__ = ["__version__"]
