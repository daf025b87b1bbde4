#!/bin/sh
# Issue 16's GPU measurements as one call of a lent GPU machine
# (docs/gpu.md, "Not measured on a GPU"): fine-tune paper-12m on
# its2_unite_insd, then classify 100,000 of its reads with prefetch and
# bf16 on and off (benchmarks/gpu_unite.py).
#
# The machine has Python 3.12 with torch, numpy, tokenizers and
# safetensors, but not the project's shared data: copy the set into an
# ignored folder of the checkout first (2.4 MB), here:
#
#   mkdir -p .gpudata && cp ../shared/data/its/its2_unite_insd.fasta.gz \
#       ../shared/data/its/its2_unite_insd.taxonomy.tsv.gz .gpudata/
#
# (/.gpudata/ is in .gitignore), then call the device tool's run with
# command "sh benchmarks/gpu_session.sh", carry [".gpudata"] and
# timeout_s 590. Everything it prints also goes to $OUT (gpu_unite.log,
# gpu_unite.json, versions.txt, nvidia-smi.txt), so a run stopped by its
# limit still returns what it measured. BUDGET_S (default 540) bounds the
# benchmark; arguments are passed to benchmarks.gpu_unite, e.g.
# `--epochs 10` for a shorter fit. On a CPU, as a smoke test:
#
#   OUT=/tmp/gpu-smoke sh benchmarks/gpu_session.sh --device cpu \
#       --preset tiny --epochs 1 --n-reads 1000 --set its_full_cbs_yeasts
#
# (with .gpudata holding that set instead).
set -u
OUT=${OUT:-gpu-out}
DATA=${DATA:-.gpudata}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
(nvidia-smi || echo "no nvidia-smi") > "$OUT/nvidia-smi.txt" 2>&1
python3 - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import numpy, safetensors, tokenizers, torch
print("python", __import__("sys").version.split()[0], "torch",
      torch.__version__, "numpy", numpy.__version__, "tokenizers",
      tokenizers.__version__, "safetensors", safetensors.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0)
      if torch.cuda.is_available() else "-")
EOF
timeout "${BUDGET_S:-540}" python3 -m benchmarks.gpu_unite --data "$DATA" \
    --out "$OUT/gpu_unite.json" "$@" 2>&1 | tee "$OUT/gpu_unite.log"
