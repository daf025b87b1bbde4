"""Model core of q2-barcodemamba: configuration, SSD scan, kernels, model,
training and inference, without QIIME 2. Importing it changes nothing in
the process; :func:`.runtime.configure` sets torch up for each run."""
