"""Benchmarks of q2-barcodemamba against the classifiers a QIIME 2 user
would otherwise run (classify-sklearn, vsearch, BLAST).

Entry point: ``python -m benchmarks.run --quick|--full`` from the
repository root (``make bench-quick`` / ``make bench``).
"""
