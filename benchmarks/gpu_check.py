"""GPU check of the optional CUDA fast path (run on a machine with a GPU).

1. Pure PyTorch vs mamba-ssm/causal-conv1d kernels on the *same weights*:
   forward logits and gradients of ``tiny`` and ``paper-12m`` networks, fp32,
   padded batches of several lengths. Reported as the max absolute
   difference relative to the largest reference magnitude.
2. Classification throughput (``TaxonomicClassifier.predict``, everything
   included: cleaning, orientation, tokenisation, network, lineage walk) for
   ``tiny`` and ``paper-12m``, with and without the kernels.

Writes one JSON file (``--out``). Used for ``docs/gpu.md``::

    python -m benchmarks.gpu_check --out gpu_check.json
"""
import argparse
import json
import os
import random
import sys
import time

import torch

from q2_barcodemamba.core import kernels
from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import TrainConfig, preset
from q2_barcodemamba.core.data import read_fasta, read_taxonomy
from q2_barcodemamba.core.model import BarcodeMambaNet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "q2_barcodemamba", "data")


DEVICE = "cuda"


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def set_kernels(net, on: bool) -> None:
    for m in net.modules():
        if hasattr(m, "use_kernels"):
            m.use_kernels = on


def equivalence(name: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cfg = preset(name, vocab_size=1024)
    net = BarcodeMambaNet(cfg, [60, 900]).cuda().train()
    net.dropout.p = 0.0
    out = {}
    for L in (37, 128, 300):
        lengths = torch.randint(L // 2, L + 1, (16,))
        lengths[0] = L
        tok = torch.randint(4, 1024, (16, L), device=DEVICE)
        mask = torch.arange(L, device=DEVICE)[None] < lengths.cuda()[:, None]
        tok = tok.masked_fill(~mask, 0)
        res = {}
        for on in (False, True):
            set_kernels(net, on)
            net.zero_grad(set_to_none=True)
            logits = net(tok, mask)
            (logits[0].square().mean() + logits[1].logsumexp(1).mean()
             ).backward()
            res[on] = ([lg.detach().float().clone() for lg in logits],
                       {k: p.grad.detach().float().clone()
                        for k, p in net.named_parameters()
                        if p.grad is not None})
        (ref_l, ref_g), (ker_l, ker_g) = res[False], res[True]
        fwd = max(float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))
                  for a, b in zip(ref_l, ker_l))
        grad = max(float((ref_g[k] - ker_g[k]).abs().max()
                         / ref_g[k].abs().max().clamp(min=1e-12))
                   for k in ref_g)
        worst = max(ref_g, key=lambda k: float(
            (ref_g[k] - ker_g[k]).abs().max()
            / ref_g[k].abs().max().clamp(min=1e-12)))
        out[f"L{L}"] = {"forward_rel_max_diff": fwd,
                        "grad_rel_max_diff": grad, "worst_grad": worst}
    return out


def throughput(name: str, ids, seqs, tax, reads, batch_sizes) -> dict:
    tc = TrainConfig(epochs=1, refit=False, validation_fraction=0.1,
                     device=DEVICE, learning_rate=1e-3)
    t0 = time.time()
    clf = TaxonomicClassifier(name, train_config=tc)
    clf.fit(ids, seqs, tax, progress=lambda m: None)
    fit_s = time.time() - t0
    res = {"fit_1_epoch_s": fit_s, "n_parameters": clf.net.num_parameters()}
    for on in (False, True):
        if on and not kernels.kernels_available():
            continue
        set_kernels(clf.net, on)
        runs = [(bs, "same") for bs in batch_sizes] + [(1024, "auto")]
        for bs, orient in runs:
            if True:
                recs = list(enumerate(reads[:2048]))
                list(clf.predict(((str(i), s) for i, s in recs),
                                 batch_size=bs, device=DEVICE,
                                 read_orientation=orient,
                                 progress=lambda m: None))  # warm-up
                sync()
                t = time.time()
                n = sum(1 for _ in clf.predict(
                    ((str(i), s) for i, s in enumerate(reads)),
                    batch_size=bs, device=DEVICE, read_orientation=orient,
                    progress=lambda m: None))
                sync()
                dt = time.time() - t
                res[f"kernels={on} batch={bs} orientation={orient}"] = {
                    "reads": n, "seconds": dt, "reads_per_s": n / dt,
                    "ms_per_read": 1000 * dt / n}
                print(name, on, bs, orient, f"{n / dt:,.0f} reads/s",
                      flush=True)
    # network alone (no tokenisation/orientation), largest batch
    tokens = clf.tokenizer.encode(reads[:8192], 512)
    from q2_barcodemamba.core.runtime import pad_batch
    for on in (False, True):
        if on and not kernels.kernels_available():
            continue
        set_kernels(clf.net, on)
        order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
        bs = max(batch_sizes)
        with torch.no_grad():
            for rep in range(2):
                sync()
                t = time.time()
                for s in range(0, len(order), bs):
                    tok, mask = pad_batch([tokens[i] for i in
                                           order[s:s + bs]], DEVICE)
                    clf.net(tok, mask)
                sync()
        res[f"network only kernels={on} batch={bs}"] = {
            "reads_per_s": len(order) / (time.time() - t)}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--n-reads", type=int, default=50000)
    ap.add_argument("--presets", nargs="+", default=["tiny", "paper-12m"])
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args(argv)
    global DEVICE
    DEVICE = a.device
    torch.backends.cuda.matmul.allow_tf32 = False
    report = {"torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda"
              else "cpu",
              "kernels": kernels.describe()}
    print(report, flush=True)

    def dump():
        with open(a.out, "w") as fh:
            json.dump(report, fh, indent=1)
    if kernels.kernels_available():
        for name in a.presets:
            try:
                report[f"equivalence {name}"] = equivalence(name)
            except Exception as exc:  # report, keep going
                report[f"equivalence {name}"] = {"error": repr(exc)}
            print(name, report[f"equivalence {name}"], flush=True)
            dump()
    recs = list(read_fasta(os.path.join(DATA,
                                        "its_full_cbs_yeasts.fasta.gz")))
    tax = read_taxonomy(os.path.join(DATA,
                                     "its_full_cbs_yeasts.taxonomy.tsv.gz"))
    ids, seqs = [r for r, _ in recs], [s for _, s in recs]
    rnd = random.Random(0)
    reads = [rnd.choice(seqs) for _ in range(a.n_reads)]
    torch.backends.cuda.matmul.allow_tf32 = True
    for name in a.presets:
        try:
            report[f"throughput {name}"] = throughput(
                name, ids, seqs, tax, reads, [256, 1024, 4096])
        except Exception as exc:
            report[f"throughput {name}"] = {"error": repr(exc)}
        dump()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
