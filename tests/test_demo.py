"""The README's demo (scripts/demo.py): its inputs and its scoring, fast.

The full demo (`make demo`, ~8 minutes: fit, classify, barplot through the
QIIME 2 CLI) runs the same commands as the tutorial, which
tests/test_docs.py runs verbatim; here the demo's own code is checked: the
held-out split it writes and the per-rank accuracy it prints.
"""
import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "demo.py")


def load_demo():
    spec = importlib.util.spec_from_file_location("demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_fasta_ids(path):
    with open(path) as fh:
        return [line[1:].split()[0] for line in fh if line.startswith(">")]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    demo = load_demo()
    out = str(tmp_path_factory.mktemp("demo"))
    n_ref, n_query = demo.prepare_inputs(out, seed=0)
    return demo, out, n_ref, n_query


def test_demo_holds_out_a_disjoint_query_set(demo_out):
    demo, out, n_ref, n_query = demo_out
    ref = read_fasta_ids(os.path.join(out, "reference.fasta"))
    query = read_fasta_ids(os.path.join(out, "query.fasta"))
    assert (len(ref), len(query)) == (n_ref, n_query)
    assert n_ref + n_query == 3692 and 300 < n_query < 450
    assert not set(ref) & set(query)
    for name, ids in (("reference", ref), ("query", query)):
        tax = demo.read_taxonomy(os.path.join(out, f"{name}-taxonomy.tsv"))
        assert list(tax) == ids


def test_demo_scores_calls_at_the_depth_the_reference_knows(demo_out):
    """Calls cut at the deepest rank the reference knows are all right;
    asserting the unseen species of a query read makes its species wrong."""
    demo, out, _, _ = demo_out
    truth = demo.read_taxonomy(os.path.join(out, "query-taxonomy.tsv"))
    ref = demo.read_taxonomy(os.path.join(out, "reference-taxonomy.tsv"))
    known = {";".join(t.split(";")[:r + 1]) for t in ref.values()
             for r in range(7)}

    def write(calls):
        os.makedirs(os.path.join(out, "query-classification"), exist_ok=True)
        with open(os.path.join(out, "query-classification",
                               "taxonomy.tsv"), "w") as fh:
            fh.write("Feature ID\tTaxon\tConfidence\n")
            fh.writelines(f"{i}\t{t}\t1\n" for i, t in calls.items())

    def report():
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            demo.accuracy_report(out)
        return {m.group(1): float(m.group(2)) for m in re.finditer(
            r"^\s+(\w+)\s+([\d.]+) %$", text.getvalue(), re.MULTILINE)}

    def cut(t):
        parts = t.split(";")
        depth = max(r + 1 for r in range(7)
                    if ";".join(parts[:r + 1]) in known)
        return ";".join(parts[:depth])
    write({i: cut(t) for i, t in truth.items()})
    scores = report()
    assert list(scores) == list(demo.RANKS)
    assert all(v == 100.0 for v in scores.values()), scores
    write(truth)                       # over-calls the unseen species
    scores = report()
    unseen_species = sum(t not in ref.values() for t in truth.values())
    assert unseen_species > 0
    assert scores["genus"] == 100.0 and scores["species"] < 100.0


def test_demo_command_line_help():
    r = subprocess.run([sys.executable, SCRIPT, "--help"], text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "--output-dir" in r.stdout and "--epochs" in r.stdout
