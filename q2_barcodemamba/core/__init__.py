"""Model core of q2-barcodemamba: configuration, SSD scan, kernels, model."""
import os

# PyTorch's CPU convolutions (oneDNN) cache one compiled kernel per input
# shape, up to 1024 of them. Classifying reads in length-sorted batches
# meets hundreds of shapes, and the cache grew classify's memory from 0.8
# to 2.5 GB over a million ITS2 reads (docs/benchmarks.md). A small cache
# keeps memory flat at the same speed. Read by oneDNN when it creates its
# first kernel, so setting it here, before any model runs, is enough; an
# explicit setting in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")
