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
    # click and setuptools are not imported by the plugin: they bound what
    # pip may install into the QIIME 2 environment so that `qiime` still
    # starts (issue 15; checked by q2_barcodemamba/install_check.py):
    # - click<8.2: q2cli calls Option.make_metavar() without the ctx that
    #   click 8.2 requires, and click 8.5 makes is_bool_flag read-only;
    #   tokenizers -> huggingface-hub 2.x would pull click>=8.4.2.
    # - setuptools<81: qiime2 loads plugins with pkg_resources, removed in
    #   setuptools 81; torch 2.13 asks for setuptools>=77.0.3 and would
    #   otherwise get the newest.
    install_requires=[
        "torch>=2.1",
        "tokenizers>=0.15",
        "safetensors>=0.4",
        "numpy",
        "pandas",
        "matplotlib",
        "packaging",
        "click<8.2",
        "setuptools<81",
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
        "q2_barcodemamba.tests": ["data/*", "data/*/*"],
    },
    zip_safe=False,
)
