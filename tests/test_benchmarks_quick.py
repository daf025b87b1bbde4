"""The benchmark harness (benchmarks/, issue 5) in quick mode, end to end.

Runs ``python -m benchmarks.run --quick`` from the source checkout (about
10 minutes on 2 cores; not a timed test) and checks what it produced: a
leak-free split, a classification from every method for every query,
scores that are percentages, calibration results that match the CLI, the
scaling rows and the report with its plots. The harness lives beside the
package in the repository, so this test needs a source checkout and fails
(does not skip) when benchmarks/ is missing. Set ``Q2BM_BENCH_OUT=DIR`` to
keep the harness output in DIR (a second run there reuses finished steps).
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BENCH = os.path.join(REPO, "benchmarks")
METHODS = {"naive-bayes", "vsearch", "vsearch-top-hit", "blast",
           "barcodemamba"}


def _ids(fasta):
    with open(fasta) as fh:
        return {line[1:].split()[0] for line in fh if line.startswith(">")}


def _percentages(metrics):
    """Every percentage of a method's metrics, as (name, value)."""
    out = [(f"rank_accuracy.{r}", v)
           for r, v in metrics["rank_accuracy"].items()]
    out += [(f"right_call.{c}", v)
            for c, v in metrics["right_call_per_category"].items()]
    out += [(k, metrics[k]) for k in (
        "right_call", "seen_species_accuracy",
        "unseen_species_genus_accuracy", "unseen_species_overcall",
        "unseen_genus_family_accuracy", "unseen_genus_overcall")]
    return out


def _bench_module(name):
    """Import benchmarks.<name> from the checkout (fails if it is absent)."""
    if not os.path.isfile(os.path.join(BENCH, f"{name}.py")):
        raise AssertionError(
            f"The benchmark harness is missing: expected {BENCH}/{name}.py "
            "next to the q2_barcodemamba package. Run the tests from a "
            "source checkout of the repository.")
    sys.path.insert(0, REPO)
    try:
        import importlib
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path.remove(REPO)


class TestScoring(unittest.TestCase):
    """The right-call rule on a hand-made reference (fast)."""

    def setUp(self):
        self.M = _bench_module("metrics")
        base = "k__F;p__A;c__S;o__O;f__Fa;"
        self.base = base
        ref = {"r1": base + "g__G;s__G_x", "r2": base + "g__G;s__G_y",
               "r3": base + "g__H;s__H_z"}
        truth = {"q1": (base + "g__G;s__G_x", "seen"),
                 "q2": (base + "g__G;s__G_new", "unseen_species"),
                 "q3": (base + "g__New;s__New_a", "unseen_genus")}
        self.truth = self.M.Truth(truth, self.M.reference_prefixes(ref))

    def test_knowable_depth_per_category(self):
        self.assertEqual(list(self.truth.knowable), [7, 6, 5])

    def test_deepest_knowable_rank_and_nothing_deeper_is_right(self):
        b = self.base
        m = self.M.evaluate(self.truth, {
            "q1": b + "g__G;s__G_x", "q2": b + "g__G",
            "q3": b + "g__unidentified"})      # placeholder asserts nothing
        self.assertEqual(m["right_call"], 100.0)
        self.assertEqual(m["unseen_species_overcall"], 0.0)
        self.assertEqual(m["unseen_genus_overcall"], 0.0)

    def test_over_and_under_calls_are_wrong(self):
        b = self.base
        m = self.M.evaluate(self.truth, {
            "q1": b + "g__G",                  # under-call
            "q2": b + "g__G;s__G_x",           # over-call
        })                                     # q3 missing: Unassigned
        self.assertEqual(m["right_call"], 0.0)
        self.assertEqual(m["n_missing"], 1)
        self.assertEqual(m["seen_species_accuracy"], 0.0)
        self.assertEqual(m["unseen_species_genus_accuracy"], 100.0)
        self.assertEqual(m["unseen_species_overcall"], 100.0)
        self.assertEqual(m["rank_accuracy"]["genus"], 100.0)
        self.assertAlmostEqual(m["rank_accuracy"]["family"], 200 / 3)


class TestReportTargets(unittest.TestCase):
    """The targets list of the report (fast)."""

    def test_an_untimed_rate_is_not_a_missed_target(self):
        R = _bench_module("report")
        self.assertEqual(R._mark_rate(None, 200), "not timed in this run")
        self.assertEqual(R._mark_rate(float("nan"), 200),
                         "not timed in this run")
        self.assertEqual(R._mark_rate(150.0, None, None),
                         "not timed in this run")
        self.assertEqual(R._mark_rate(250.0, 200), "met")
        self.assertEqual(R._mark_rate(150.0, 200), "**missed**")
        self.assertEqual(R._mark_rate(150.0, None, 290.0), "met")
        self.assertEqual(R._mark_rate(150.0, None, 310.0), "**missed**")

    def test_the_report_says_where_each_result_was_measured(self):
        P = _bench_module("provenance")
        at = {"commit": "abc1234", "date": "2026-12-04 00:31"}
        later = {"commit": "def5678+dirty", "date": "2026-12-05 01:10"}
        results = {"datasets": {
            "a": {"methods": {"nb": {"measured": at},
                              "bm": {"measured": later,
                                     "fit_measured": at}},
                  "knn_probe": {"rows": []}},
            "b": {"methods": {"nb": {}}}},
            "sweeps": {"a": {"measured": later}},
            "scaling": {"rows": [{"measured": later}, {}]}}
        self.assertEqual(
            P.measured_at(results),
            "commit abc1234 (2026-12-04): 1 method run, 1 fit (of "
            "those runs); commit def5678+dirty (2026-12-05): 1 method "
            "run, 1 throughput sweep, 1 scaling run; not recorded (written before the harness recorded it): "
            "1 method run, 1 nearest-neighbour probe, 1 scaling run")
        self.assertEqual(P.measured_at({}), "no steps")
        st = P.stamp()
        self.assertEqual(set(st), {"commit", "date"})


class TestBenchmarksQuick(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(os.path.join(BENCH, "run.py")):
            raise AssertionError(
                f"The benchmark harness is missing: expected {BENCH}/run.py "
                "next to the q2_barcodemamba package. Run the tests from a "
                "source checkout of the repository.")
        cls._tmp = tempfile.TemporaryDirectory()
        # Q2BM_BENCH_OUT keeps the run (and reuses its finished steps)
        cls.out = os.environ.get("Q2BM_BENCH_OUT") or cls._tmp.name
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--quick", "--out",
             cls.out], cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError(
                f"`python -m benchmarks.run --quick` exited "
                f"{proc.returncode}:\n{proc.stdout[-4000:]}\n"
                f"{proc.stderr[-4000:]}")
        with open(os.path.join(cls.out, "results.json")) as fh:
            cls.results = json.load(fh)
        cls.ds_dir = os.path.join(cls.out, "its_full_cbs_yeasts")
        cls.ds = cls.results["datasets"]["its_full_cbs_yeasts"]

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_split_is_leak_free_and_has_every_category(self):
        splits = _bench_module("splits")
        check = splits.check_split(os.path.join(self.ds_dir, "split"))
        self.assertTrue(check["ok"])
        for part in ("test", "val"):
            for cat, n in self.ds["split"]["queries"][part].items():
                self.assertGreater(n, 10, f"{part} {cat}")
        self.assertGreater(self.ds["split"]["n_reference"], 2500)

    def test_every_method_classified_every_query(self):
        self.assertEqual(set(self.ds["methods"]), METHODS)
        queries = _ids(os.path.join(self.ds_dir, "split", "test.fasta"))
        for name in METHODS:
            with self.subTest(method=name):
                path = os.path.join(self.ds_dir, "methods", name,
                                    "test-classification.tsv")
                with open(path, encoding="utf-8") as fh:
                    rows = [line.rstrip("\n").split("\t")
                            for line in fh][1:]
                self.assertEqual({r[0] for r in rows}, queries)
                self.assertTrue(all(r[1].strip() for r in rows))
                m = self.ds["methods"][name]["metrics"]
                self.assertEqual(m["n_missing"], 0)
                self.assertEqual(m["n_queries"], len(queries))

    def test_metrics_are_percentages(self):
        for name, res in self.ds["methods"].items():
            for key, v in _percentages(res["metrics"]):
                with self.subTest(method=name, metric=key):
                    self.assertFalse(math.isnan(v))
                    self.assertGreaterEqual(v, 0.0)
                    self.assertLessEqual(v, 100.0)
            self.assertGreater(res["classify"]["seconds"], 0)
            self.assertGreater(res["classify"]["peak_rss_mib"], 0)
            self.assertGreater(res["model_mib"], 0)
        # scoring sanity: a top hit names most new haplotypes' species
        top = self.ds["methods"]["vsearch-top-hit"]["metrics"]
        self.assertGreater(top["seen_species_accuracy"], 50)

    def test_calibration_matches_cli_and_is_in_range(self):
        self.assertEqual(set(self.ds["calibration"]),
                         {"naive-bayes", "barcodemamba"})
        for name, c in self.ds["calibration"].items():
            with self.subTest(method=name):
                # per-rank confidences recomputed from the model give the
                # same calls as the classify action
                self.assertGreaterEqual(c["cli_agreement"], 95.0)
                for v in list(c["ece"].values()) + c["test"]["right_call"]:
                    self.assertTrue(0.0 <= v <= 100.0, v)
                self.assertTrue(0.0 <= c["best_val_threshold"] <= 1.0)

    def test_nearest_neighbour_probe(self):
        probe = self.ds["knn_probe"]
        # the grid: network alone once, then every alpha > 0 x k x tau
        self.assertEqual(len(probe["rows"]), 1 + 4 * 3 * 3)
        self.assertEqual(probe["network_only"]["alpha"], 0.0)
        self.assertEqual(probe["knn_only"]["alpha"], 1.0)
        self.assertTrue(0 < probe["mixed"]["alpha"] < 1)
        for row in probe["rows"]:
            for v in list(row["test"].values()) + [row["val_right_call"]]:
                self.assertTrue(0.0 <= v <= 100.0, row)
        # chosen on validation: no variant beats the choice there
        best = max(r["val_right_call"] for r in probe["rows"]
                   if 0 < r["alpha"] < 1)
        self.assertEqual(probe["mixed"]["val_right_call"], best)

    def test_scaling_sweep_and_report(self):
        rows = self.results["scaling"]["rows"]
        self.assertEqual([r["reads"] for r in rows], [1000, 10000])
        for r in rows:
            self.assertGreater(r["seconds"], 0)
            self.assertGreater(r["peak_rss_mib"], 0)
        rows = self.results["sweeps"]["its_full_cbs_yeasts"]["rows"]
        self.assertEqual({r["batch_size"] for r in rows}, {16, 256, "auto"})
        self.assertTrue(all(r["reads_per_second"] > 0 for r in rows))
        with open(os.path.join(self.out, "benchmarks.md"),
                  encoding="utf-8") as fh:
            md = fh.read()
        for name in ("## Headline", "nearest neighbours over the embeddings",
                     "NB classify-sklearn", "vsearch top hit",
                     "BLAST consensus", "barcodemamba (default preset)"):
            self.assertIn(name, md)
        for png in ("rank-accuracy", "threshold", "throughput", "scaling"):
            path = os.path.join(self.out, "images", f"bench-{png}.png")
            with open(path, "rb") as fh:
                self.assertEqual(fh.read(8), b"\x89PNG\r\n\x1a\n")


class TestRecalibrate(unittest.TestCase):
    """``benchmarks.accuracy.recalibrate`` goes through fit's own steps:
    with no overrides it gives back the fitted classifier's calibration and
    memory (the "same network" ablation rows rest on this; a copy of fit's
    data preparation once drifted from it)."""

    def test_no_overrides_reproduce_the_fitted_classifier(self):
        import numpy as np
        from q2_barcodemamba.tests.helpers import (small_reference,
                                                   tiny_classifier)
        clf = tiny_classifier()
        ids, seqs, tax = small_reference()
        out = _bench_module("accuracy").recalibrate(clf, ids, seqs, tax)
        self.assertIs(out.net, clf.net)
        self.assertEqual(len(out.memory), len(clf.memory))
        self.assertGreater(len(clf.memory), len(ids))  # amplicons kept
        np.testing.assert_array_equal(out.memory.leaf, clf.memory.leaf)
        np.testing.assert_allclose(out.memory.embeddings.float(),
                                   clf.memory.embeddings.float(), atol=1e-3)
        a, b = out.calibration, clf.calibration
        self.assertEqual(a["mixture"], b["mixture"])
        self.assertEqual(a["abstention"], b["abstention"])
        self.assertAlmostEqual(a["temperature"], b["temperature"], places=4)
        self.assertEqual(a["best_confidence"], b["best_confidence"])
        self.assertAlmostEqual(a["score"], b["score"], places=6)
        wrong = _bench_module("accuracy").recalibrate(
            clf, ids, seqs, tax, region_cutouts=False)
        self.assertEqual(len(wrong.memory), len(ids))


class TestLineageScaling(unittest.TestCase):
    """``benchmarks.lineage_scaling.replicate`` lists the synthetic
    lineages as ``LabelEncoder.fit`` would (the walk's identity order) and
    moves every head row and memory leaf index with its lineage."""

    def test_replicate_keeps_rows_with_their_lineages(self):
        import numpy as np
        from q2_barcodemamba.core.io import load_classifier, save_classifier
        from q2_barcodemamba.core.taxonomy import LabelEncoder
        from q2_barcodemamba.core.walk import LeafTree
        from q2_barcodemamba.tests.helpers import tiny_classifier
        clf = tiny_classifier()
        with tempfile.TemporaryDirectory() as d:
            save_classifier(clf, os.path.join(d, "src"))
            sizes = _bench_module("lineage_scaling").replicate(
                os.path.join(d, "src"), os.path.join(d, "dst"), 3)
            big = load_classifier(os.path.join(d, "dst"))
        lab, old = big.labels, clf.labels
        self.assertEqual(sizes["lineages"], len(lab.leaves))
        self.assertGreater(len(lab.leaves), 2 * len(old.leaves))
        again = LabelEncoder.fit([tuple(x.split(";")) for x in lab.leaves],
                                 len(lab.rank_names), lab.rank_names)
        self.assertEqual(again.leaves, lab.leaves)
        self.assertEqual(again.classes, lab.classes)
        self.assertTrue(LeafTree(lab.leaf_to_class, lab.n_classes).identity)
        new_at = {x: i for i, x in enumerate(lab.leaves)}
        rows = [new_at[x] for x in old.leaves]
        sp_at = {x: i for i, x in enumerate(lab.classes[-1])}
        sp_rows = [sp_at[x] for x in old.classes[-1]]
        for h, r in ((-1, rows), (len(old.rank_names) - 1, sp_rows)):
            a, b = big.net.heads[h], clf.net.heads[h]
            np.testing.assert_array_equal(a.weight.detach()[r].numpy(),
                                          b.weight.detach().numpy())
            np.testing.assert_array_equal(a.bias.detach()[r].numpy(),
                                          b.bias.detach().numpy())
        kept = clf.memory.leaf >= 0
        got = big.memory.leaf[:len(clf.memory)][kept].numpy()
        want = np.asarray(rows)[clf.memory.leaf[kept].numpy()]
        np.testing.assert_array_equal(got, want)


if __name__ == "__main__":
    unittest.main()
