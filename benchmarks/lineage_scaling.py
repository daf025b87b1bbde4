"""Classify cost against the number of reference lineages (issue 16).

    .venv/bin/python -m benchmarks.lineage_scaling [--factors 1,3,10]

From a saved classifier (default: the one ``benchmarks.unite_scale``
fitted on UNITE's ITS2 set, 40,610 lineages) it builds synthetic
classifiers ``factor`` times its size without fitting: every lineage that
reaches the last rank gets ``factor - 1`` copies (``<lineage>_copy<j>``),
their rows of the species and leaf heads are the original rows plus
small Gaussian noise (2 % of the weights' standard deviation), and the
reference memory's reads of those lineages are copied with 2 %
random substitutions and their embeddings with a little noise (seeded).
Leaves and species are then listed in the order a fit of that reference
would list them (its heads' rows and memory permuted to match), so the
lineage walk sees what it sees on a real reference of that size.
What grows is what classify's cost depends on: lineages (leaf head,
softmax, walk) and reference reads (k-mer and embedding search). The
calls are not meaningful (copies are near-duplicates); the cost is.

Each size is classified in a fresh process (2 threads): load time, the
k-mer index build (once per process, grows with the reference), then
``--reads`` reads of the original reference classified, reads/s after
the index build, and the process's peak RSS. Writes
``docs/results/lineage_scaling.json``; ``benchmarks.unite_scale``'s
report adds it to docs/benchmarks.md. About 3 min for 1, 3, 10 with
2,000 reads on 2 cores (a 10x classifier is ~0.7 GiB on disk, in a
temporary directory).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks.run import DEFAULT_DATA  # noqa: E402
from benchmarks.unite_scale import CLASSIFY_READS  # noqa: E402
from q2_barcodemamba.core.taxonomy import LabelEncoder  # noqa: E402

RESULTS = os.path.join(REPO, "docs", "results")
DEFAULT_CLF = os.path.join(HERE, "results", "unite_scale", "its2_unite_insd",
                           "classifier")

CHILD = r"""
import json, sys, time
import numpy as np
t = time.time()
from q2_barcodemamba.core.io import load_classifier
from q2_barcodemamba.core.data import read_fasta
from q2_barcodemamba.core.runtime import set_threads
set_threads(2)
clf = load_classifier(sys.argv[1])
load = time.time() - t
t = time.time()
clf.memory.index, clf.memory.kmers
index = time.time() - t
""" + CLASSIFY_READS + r"""
print(json.dumps({"reads": n, "load_s": load, "index_s": index,
                  "reads_per_s": n / dt,
                  "peak_rss_mib": int(hwm[0].split()[1]) / 1024}))
"""


def replicate(src: str, dst: str, factor: int, seed: int = 0,
              grow: str = "species") -> dict:
    """Write a synthetic classifier ``factor`` times the size of ``src``
    into ``dst`` (see the module text); returns its sizes. ``grow``:
    ``species`` (copies are new species of the same genus) or ``genera``
    (each copy's genus is a new genus, ``<genus>_copy<j>``, with a genus
    head row copied from its original's with noise)."""
    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(seed)
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "labels.json")) as fh:
        lab = json.load(fh)
    R = len(lab["rank_names"])
    leaves = list(lab["leaves"])
    last = {c: i for i, c in enumerate(lab["classes"][-1])}
    full = [i for i, x in enumerate(leaves) if x in last]
    t = load_file(os.path.join(src, "model.safetensors"))
    n_heads = len({k.split(".")[1] for k in t if k.startswith("heads.")})
    leaf_head = f"heads.{n_heads - 1}"
    species_head = f"heads.{R - 1}" if n_heads == R + 1 else None
    rows_leaf = np.asarray(full)
    rows_species = np.asarray([last[leaves[i]] for i in full])
    genus_head = f"heads.{R - 2}" if n_heads == R + 1 else None
    genus_of = {c: i for i, c in enumerate(lab["classes"][R - 2])}
    rows_genus = []
    for j in range(1, factor):
        names = [_copy_name(leaves[i], j, R, grow) for i in full]
        lab["leaves"] += names
        lab["classes"][-1] += names
        if grow == "genera":
            new = list(dict.fromkeys(x.rsplit(";", 1)[0] for x in names))
            lab["classes"][R - 2] += new
            rows_genus += [genus_of[g.rsplit("_copy", 1)[0]] for g in new]
    heads = [(leaf_head, rows_leaf), (species_head, rows_species)]
    if grow == "genera" and genus_head is not None:
        heads.append((genus_head, np.asarray(rows_genus, dtype=np.int64)))
    for head, rows in heads:
        if head is None:
            continue
        w, b = t[head + ".weight"], t[head + ".bias"]
        sd = float(w.std())
        reps = 1 if head == genus_head else factor - 1   # genus rows: all
        t[head + ".weight"] = np.concatenate([w] + [   # copies listed once
            w[rows] + rng.normal(0, 0.02 * sd, (len(rows), w.shape[1]))
            .astype(np.float32) for _ in range(reps)])
        t[head + ".bias"] = np.concatenate([b] + [b[rows]] * reps)
    if "memory.leaf" in t:
        _replicate_memory(t, rows_leaf, len(leaves), factor, rng)
    _fit_order(lab, t, leaf_head, n_heads == R + 1)
    save_file(t, os.path.join(dst, "model.safetensors"))
    with open(os.path.join(dst, "labels.json"), "w") as fh:
        json.dump(lab, fh)
    with open(os.path.join(src, "config.json")) as fh:
        cfg = json.load(fh)
    cfg.setdefault("summary", {})["n_leaves"] = len(lab["leaves"])
    with open(os.path.join(dst, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    shutil.copy(os.path.join(src, "tokenizer.json"), dst)
    return {"lineages": len(lab["leaves"]),
            "reference_reads": int(len(t["memory.leaf"]))
            if "memory.leaf" in t else 0}


def _copy_name(leaf: str, j: int, R: int, grow: str) -> str:
    """The lineage of copy ``j`` of ``leaf``: a new species (``species``)
    or a new species of a new genus (``genera``)."""
    if grow == "species":
        return leaf + f"_copy{j}"
    parts = leaf.split(";")
    parts[R - 2] += f"_copy{j}"
    parts[R - 1] += f"_copy{j}"
    return ";".join(parts)


def _fit_order(lab: dict, t: dict, leaf_head: str, rank_heads: bool
               ) -> None:
    """List the leaves and every rank's classes in the order that
    ``LabelEncoder.fit`` gives a real reference of this size (leaves in
    the walk's tree order, classes sorted), permuting the heads' rows and
    the memory's leaf indices to match."""
    leaves = lab["leaves"]
    enc = LabelEncoder.fit([tuple(x.split(";")) for x in leaves],
                           len(lab["classes"]), lab["rank_names"])
    pos = {x: i for i, x in enumerate(leaves)}
    perm = np.asarray([pos[x] for x in enc.leaves], dtype=np.int64)
    lab["leaves"] = enc.leaves
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    if "memory.leaf" in t:
        leaf = t["memory.leaf"]
        t["memory.leaf"] = np.where(leaf >= 0, inv[np.maximum(leaf, 0)], -1)
    heads = [(leaf_head, perm)]
    for r in range(len(lab["classes"]) if rank_heads else 0):
        old = {x: i for i, x in enumerate(lab["classes"][r])}
        order = np.asarray([old[x] for x in enc.classes[r]], dtype=np.int64)
        assert len(order) == len(old), f"rank {r}: classes differ"
        lab["classes"][r] = enc.classes[r]
        heads.append((f"heads.{r}", order))
    for head, rows in heads:
        for k in (".weight", ".bias"):
            t[head + k] = np.ascontiguousarray(t[head + k][rows])


def _replicate_memory(t: dict, full: np.ndarray, n_leaves: int, factor: int,
                      rng) -> None:
    """Copies of the memory's reads of the lineages ``full``: reads with
    2 % substitutions, embeddings with noise, leaf index of the copy."""
    leaf, off = t["memory.leaf"], t["memory.seq_offsets"]
    emb = t["memory.embeddings"].astype(np.float32)
    copy_of = np.full(n_leaves, -1, dtype=np.int64)
    copy_of[full] = np.arange(len(full))
    rows = np.flatnonzero((leaf >= 0) & (copy_of[np.maximum(leaf, 0)] >= 0))
    reads = [t["memory.seq_data"][off[i]:off[i + 1]] for i in rows]
    lens = np.asarray([len(r) for r in reads], dtype=np.int64)
    data, offs = [t["memory.seq_data"]], [off[:-1]]
    embs, leaves = [emb], [leaf]
    end = int(off[-1])
    acgt = np.frombuffer(b"ACGT", dtype=np.uint8)
    for j in range(1, factor):
        d = np.concatenate(reads) if reads else np.zeros(0, np.uint8)
        hit = rng.random(len(d)) < 0.02
        d[hit] = acgt[rng.integers(0, 4, int(hit.sum()))]
        data.append(d)
        offs.append(end + np.concatenate([[0], np.cumsum(lens)[:-1]]))
        end += int(lens.sum())
        e = emb[rows] + rng.normal(0, 0.05 * float(np.abs(emb).mean()),
                                   (len(rows), emb.shape[1]))
        embs.append(e / np.linalg.norm(e, axis=1, keepdims=True))
        leaves.append(n_leaves + len(full) * (j - 1) + copy_of[leaf[rows]])
    t["memory.seq_data"] = np.concatenate(data)
    t["memory.seq_offsets"] = np.concatenate(offs + [[end]]).astype(np.int64)
    t["memory.embeddings"] = np.concatenate(embs).astype(np.float16)
    t["memory.leaf"] = np.concatenate(leaves).astype(np.int64)


def measure(path: str, fasta: str, reads: int) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, path, fasta,
                          str(reads)], capture_output=True, text=True,
                         cwd=REPO, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--classifier", default=DEFAULT_CLF)
    ap.add_argument("--fasta", default=os.path.join(
        DEFAULT_DATA, "its2_unite_insd.fasta.gz"))
    ap.add_argument("--factors", default="1,3,10")
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--grow", default="species,genera",
                    help="how the copies grow the reference: new species "
                         "of the same genera, new genera, or both")
    ap.add_argument("--out", default=os.path.join(RESULTS,
                                                  "lineage_scaling.json"))
    args = ap.parse_args()
    if not os.path.isdir(args.classifier):
        print(f"{args.classifier} not found: run `python -m "
              "benchmarks.unite_scale` first (it saves the classifier).",
              file=sys.stderr)
        sys.exit(2)
    rows = []
    runs = [(f, g) for g in args.grow.split(",")
            for f in [int(x) for x in args.factors.split(",")]]
    runs = [(f, g) for i, (f, g) in enumerate(runs)   # 1x once
            if f > 1 or (f, "species") not in runs[:i] and
            (f, "genera") not in runs[:i]]
    for f, grow in runs:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.classifier
            sizes = None
            if f > 1:
                path = os.path.join(tmp, "clf")
                sizes = replicate(args.classifier, path, f, grow=grow)
            r = measure(path, args.fasta, args.reads)
            if sizes is None:
                from q2_barcodemamba.core.io import load_classifier
                c = load_classifier(path)
                sizes = {"lineages": len(c.labels.leaves),
                         "reference_reads": len(c.memory)}
            r.update(sizes, factor=f, grow=grow if f > 1 else "-")
            rows.append(r)
            print(json.dumps(r), flush=True)
    notes = None
    if os.path.exists(args.out):       # the hand-written notes stay
        with open(args.out) as fh:
            notes = json.load(fh).get("notes")
    with open(args.out, "w") as fh:
        json.dump({"classifier": os.path.relpath(args.classifier, REPO),
                   "reads": args.reads, "rows": rows, "notes": notes}, fh,
                  indent=1)
    from benchmarks.unite_scale import collect, write_section
    write_section(collect())


if __name__ == "__main__":
    main()
