"""Would a nearest-neighbour component over the learned embeddings help?

An experiment on a classifier the benchmark has already fitted
(``<out>/<data set>/methods/barcodemamba/classifier.qza``), on the same
split. Every reference read and query is embedded once with the fine-tuned
network (masked mean of the final hidden states, L2-normalised); a query's
k nearest reference reads (cosine similarity) vote for their lineages with
weights ``exp((sim - best) / tau)``. The vote distribution over reference
lineages is mixed with the network's (temperature-calibrated) lineage
probabilities, ``p = (1 - alpha) * p_net + alpha * p_knn``, and the result
goes through the same top-down walk and confidence cut-off as ``classify``.
alpha, k, tau and the threshold are chosen on the validation queries
(other taxa than the test queries); the test queries score the choice.
alpha = 0 is the network alone, alpha = 1 the neighbours alone.

This is the k-NN lever of issue 5 (as in embedding-based barcode
classifiers, e.g. BarcodeBERT's 1-NN probe, Arias et al. 2023; kNN-LM,
Khandelwal et al. 2020). Part of ``benchmarks.run`` (cached in
``knn_probe.json`` beside the split); also runs on its own:

    .venv/bin/python -m benchmarks.knn_probe benchmarks/results/full/its2_cbs
"""
import argparse
import itertools
import json
import os
import time

import numpy as np
import torch

from q2_barcodemamba.core.data import clean_sequence, length_batches, \
    orient, read_fasta
from q2_barcodemamba.core.inference import hierarchical_walk
from q2_barcodemamba.core.taxonomy import parse_taxonomy
from q2_barcodemamba.core.runtime import pad_batch

from . import metrics
from .provenance import stamp
from .splits import read_taxonomy, read_truth

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
KS = [1, 5, 20]
TAUS = [0.005, 0.02, 0.1]
TEST_KEYS = ("right_call", "seen_species_accuracy",
             "unseen_species_genus_accuracy", "unseen_species_overcall",
             "unseen_genus_family_accuracy")


def embed(clf, seqs, batch_size=256):
    """(L2-normalised embeddings (n, D), calibrated lineage probs (n, L))."""
    tokens = clf.tokenizer.encode(seqs, clf.train_config.max_length)
    temp = clf.calibration["temperature"]
    net = clf.net.eval()
    z_all = np.empty((len(seqs), net.cfg.d_model), dtype=np.float32)
    p_all = np.empty((len(seqs), len(clf.labels.leaves)), dtype=np.float32)
    with torch.inference_mode():
        for b in length_batches([len(t) for t in tokens], batch_size):
            tok, mask = pad_batch([tokens[i] for i in b], torch.device("cpu"))
            z = net.embed(tok, mask)
            p_all[b] = torch.softmax(net.heads[-1](z).float() / temp,
                                     1).numpy()
            z_all[b] = torch.nn.functional.normalize(z.float(), dim=1).numpy()
    return z_all, p_all


def nearest(sims: np.ndarray, k: int) -> tuple:
    """Indices and similarities of the ``k`` most similar columns per row,
    most similar first."""
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, top, 1)
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(top, order, 1), np.take_along_axis(s, order, 1)


def knn_probs(top, sim, ref_leaf, n_leaves, k, tau):
    """Similarity-weighted lineage votes of the ``k`` nearest neighbours
    (``top``/``sim`` from :func:`nearest`, sorted)."""
    top, s = top[:, :k], sim[:, :k]
    w = np.exp((s - s[:, :1]) / tau)
    p = np.zeros((len(top), n_leaves), dtype=np.float64)
    rows = np.repeat(np.arange(len(top)), top.shape[1])
    np.add.at(p, (rows, ref_leaf[top].ravel()), w.ravel())
    return p / p.sum(1, keepdims=True)


def rank_calls(clf, probs):
    chosen, conf = hierarchical_walk(
        torch.as_tensor(probs), torch.as_tensor(clf.labels.leaf_to_class),
        clf.labels.n_classes)
    labels = [[clf.labels.classes[r][c] if c >= 0 else None
               for r, c in enumerate(row)] for row in chosen.numpy()]
    return labels, conf.numpy().astype(float)


def probe(ds_dir: str, method: str = "barcodemamba", progress=print
          ) -> dict:
    """Run the probe on the split and fitted classifier in ``ds_dir``;
    cached in ``knn_probe.json`` (keyed by the classifier's mtime)."""
    import qiime2
    from q2_barcodemamba.core.classifier import TaxonomicClassifier
    qza = os.path.join(ds_dir, "methods", method, "classifier.qza")
    path = os.path.join(ds_dir, "knn_probe.json")
    if os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
        if old.get("classifier_mtime") == os.path.getmtime(qza):
            return old
    t0 = time.time()
    split = os.path.join(ds_dir, "split")
    clf = qiime2.Artifact.load(qza).view(TaxonomicClassifier)
    ref = list(read_fasta(os.path.join(split, "reference.fasta")))
    tax = read_taxonomy(os.path.join(split, "reference-taxonomy.tsv"))
    ids = [i for i, _ in ref]
    _, ref_leaf = clf.labels.encode(parse_taxonomy(ids, [tax[i] for i in ids]))
    keep = ref_leaf >= 0
    z_ref, _ = embed(clf, orient([clean_sequence(s, i) for i, s in ref],
                                 "auto", clf.orienter))
    z_ref, ref_leaf = z_ref[keep], ref_leaf[keep]
    prefixes = metrics.reference_prefixes(tax)
    parts = {}
    for part in ("val", "test"):
        recs = list(read_fasta(os.path.join(split, f"{part}.fasta")))
        qids = [i for i, _ in recs]
        seqs = orient([clean_sequence(s, i) for i, s in recs], "auto",
                      clf.orienter)
        z, p_net = embed(clf, seqs)
        truth = metrics.Truth(read_truth(os.path.join(
            split, f"{part}-truth.tsv")), prefixes)
        parts[part] = (qids, nearest(z @ z_ref.T, max(KS)), p_net, truth)
    progress(f"  knn probe: embedded {len(z_ref)} reference reads and the "
             f"queries ({time.time() - t0:.0f} s)")
    n_leaves = len(clf.labels.leaves)

    def calls(part, alpha, k, tau):
        qids, (top, sim), p_net, truth = parts[part]
        p = p_net if alpha == 0 else (
            (1 - alpha) * p_net + alpha * knn_probs(top, sim, ref_leaf,
                                                    n_leaves, k, tau))
        labels, conf = rank_calls(clf, p)
        return truth, labels, conf, qids

    rows = []
    for alpha, k, tau in itertools.product(ALPHAS, KS, TAUS):
        if alpha == 0 and (k, tau) != (KS[0], TAUS[0]):
            continue
        val = metrics.threshold_curve(*calls("val", alpha, k, tau))
        best = int(np.argmax(val["right_call"]))
        thr = val["thresholds"][best]
        truth, labels, conf, qids = calls("test", alpha, k, tau)
        m = metrics.evaluate(truth, dict(zip(
            qids, metrics.calls_at(labels, conf, thr))))
        rows.append({"alpha": alpha, "k": k, "tau": tau, "threshold": thr,
                     "val_right_call": val["right_call"][best],
                     "test": {key: m[key] for key in TEST_KEYS}})
    best_of = lambda sel: max(sel, key=lambda r: r["val_right_call"])  # noqa
    out = {"classifier": method, "classifier_mtime": os.path.getmtime(qza),
           "rows": rows,
           "network_only": next(r for r in rows if r["alpha"] == 0),
           "knn_only": best_of([r for r in rows if r["alpha"] == 1]),
           "mixed": best_of([r for r in rows if 0 < r["alpha"] < 1]),
           "seconds": time.time() - t0, "measured": stamp()}
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ds_dir", help="<out>/<data set> of a benchmark run")
    ap.add_argument("--method", default="barcodemamba")
    args = ap.parse_args(argv)
    out = probe(args.ds_dir, args.method)
    for key in ("network_only", "knn_only", "mixed"):
        r = out[key]
        print(f"{key}: alpha {r['alpha']} k {r['k']} tau {r['tau']} "
              f"threshold {r['threshold']}: validation right call "
              f"{r['val_right_call']:.1f}; test " + ", ".join(
                  f"{k} {v:.1f}" for k, v in r["test"].items()))


if __name__ == "__main__":
    main()
