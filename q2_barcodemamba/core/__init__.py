"""Model core of q2-barcodemamba: configuration, SSD scan, kernels, model."""
