from setuptools import find_packages, setup

import re

with open("q2_barcodemamba/_version.py") as fh:
    version = re.search(r'__version__ = "([^"]+)"', fh.read()).group(1)

setup(
    name="q2-barcodemamba",
    version=version,
    description="BarcodeMamba+ taxonomic classification of fungal ITS "
                "barcodes as a QIIME 2 plugin",
    license="BSD-3-Clause",
    packages=find_packages(include=["q2_barcodemamba", "q2_barcodemamba.*"]),
    python_requires=">=3.8",
    # qiime2, q2-types, q2templates come from Debian or conda, not PyPI.
    install_requires=[
        "torch>=2.1",
        "tokenizers>=0.15",
        "safetensors>=0.4",
        "numpy",
        "pandas",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest"],
        "cuda": ["mamba-ssm>=2.2", "causal-conv1d>=1.4"],
    },
    entry_points={
        "qiime2.plugins": [
            "q2-barcodemamba=q2_barcodemamba.plugin_setup:plugin"],
    },
    package_data={
        "q2_barcodemamba": ["citations.bib", "data/*", "data/*/*",
                            "assets/*", "assets/*/*"],
        "q2_barcodemamba.tests": ["data/*"],
    },
    zip_safe=False,
)
