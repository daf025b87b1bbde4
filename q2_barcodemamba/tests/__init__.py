"""Tests of q2-barcodemamba (run: make test, or pytest --pyargs q2_barcodemamba)."""
