"""Visualizers: exact metrics on hand-made data, .qzv contents through the
Artifact API on a fitted classifier and real bundled reads, and the pages
rendered in headless Chromium (no JS errors, every image loaded, shown
numbers equal the computed ones).

Chromium is required (``make test`` installs it); set
Q2BM_ALLOW_NO_BROWSER=1 to skip the browser tests where it cannot be had.
"""
import math
import os
import tempfile
import unittest

import numpy as np
import pandas as pd
import qiime2
from qiime2.plugin.testing import TestPluginBase

from q2_barcodemamba._evaluation import (confusion, evaluate,
                                         parse_confidence, rank_names)
from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.taxonomy import normalize_lineage
from q2_barcodemamba.tests import browser
from q2_barcodemamba.tests.helpers import small_reference, tiny_classifier

L = "k__F;p__A;c__C;o__O;f__F1;"
EXPECTED = pd.Series({
    "r1": L + "g__G1;s__S1",
    "r2": L + "g__G1;s__S2",
    "r3": L + "g__G2;s__",                      # species unknown
    "r4": "k__F;p__B;c__D;o__P;f__F2;g__G3;s__S4",
    "r5": " k__F ; p__A;c__C;o__O;f__F1;g__G1;s__S1 ",
    "r6": L + "g__G1;s__S1",
    "extra": L + "g__G9;s__S9",                 # not classified: ignored
})
PREDICTED = pd.DataFrame({
    "Taxon": [L + "g__G1;s__S1",                 # right everywhere
              L + "g__G1;s__S1",                 # wrong species
              L + "g__G2;s__S3",                 # over-call at species
              "k__F;p__B;c__D",                  # under-call from order
              "Unassigned",
              "k__F; p__A ;c__C;o__O;f__F1;g__G2;s__;"],  # wrong genus
    "Confidence": ["0.95", "0.85", "0.55", "0.7", "0.2", "disable"]},
    index=pd.Index(["r1", "r2", "r3", "r4", "r5", "r6"], name="Feature ID"))
RANKS7 = ["kingdom", "phylum", "class", "order", "family", "genus",
          "species"]
# per rank: correct, misclassified, under_call, over_call (worked by hand)
COUNTS = {"kingdom": (5, 0, 1, 0), "phylum": (5, 0, 1, 0),
          "class": (5, 0, 1, 0), "order": (4, 0, 2, 0),
          "family": (4, 0, 2, 0), "genus": (3, 1, 2, 0),
          "species": (1, 1, 3, 1)}


class MetricTests(unittest.TestCase):
    def setUp(self):
        self.res = evaluate(PREDICTED, EXPECTED, "hand-made")

    def test_normalisation(self):
        self.assertEqual(normalize_lineage(" k__F ; p__A;g__;s__X"),
                         ("k__F", "p__A"))
        self.assertEqual(normalize_lineage("k__F;__;c__C"), ("k__F",))
        self.assertEqual(normalize_lineage("k__F;p__A;;"), ("k__F", "p__A"))
        self.assertEqual(normalize_lineage("k__F;s__unidentified"),
                         ("k__F",))
        for empty in ("Unassigned", " unassigned ", "", float("nan"), None):
            self.assertEqual(normalize_lineage(empty), ())

    def test_confidence_parsing(self):
        conf = parse_confidence(["0.5", "disable", None, "-1", 1.5, 1,
                                 "1.0000000000000002"])
        self.assertEqual(conf[0], 0.5)
        self.assertEqual(conf[5], 1.0)
        self.assertEqual(conf[6], 1.0)
        self.assertTrue(np.isnan(conf[1:5]).all())

    def test_rank_names_from_prefixes(self):
        lins = [normalize_lineage(t) for t in EXPECTED]
        self.assertEqual(rank_names(lins, 7), RANKS7)
        self.assertEqual(rank_names([("a", "b")], 3),
                         ["rank1", "rank2", "rank3"])

    def test_rank_outcomes_are_exact(self):
        m = self.res["rank_metrics"].set_index("rank")
        self.assertEqual(list(m.index), RANKS7)
        for rank, (c, mis, under, over) in COUNTS.items():
            row = m.loc[rank]
            self.assertEqual((row["correct"], row["misclassified"],
                              row["under_call"], row["over_call"]),
                             (c, mis, under, over), rank)
            self.assertAlmostEqual(row["accuracy"], c / 6)
            self.assertAlmostEqual(row["under_call_rate"], under / 6)
            self.assertAlmostEqual(row["over_call_rate"], over / 6)
        # r3's expected lineage stops at genus
        self.assertEqual(m.loc["species", "n_expected_known"], 5)
        self.assertEqual(self.res["n_unassigned"], 1)
        self.assertEqual(self.res["n_with_confidence"], 5)

    def test_deepest_call_accuracy_reliability_and_ece(self):
        # calls right at their deepest rank: r1 (species), r4 (class) of 5
        self.assertAlmostEqual(self.res["deepest_call_accuracy"], 2 / 5)
        rel = self.res["reliability"]
        self.assertEqual(len(rel), 10)
        self.assertEqual(list(rel["n_reads"]), [0] * 5 + [1, 0, 1, 1, 1])
        self.assertEqual(list(rel["accuracy"].dropna()), [0, 1, 0, 1])
        # |1-.95| + |0-.85| + |0-.55| + |1-.7| over the 4 calls (r5 has
        # no call, r6 no confidence)
        self.assertAlmostEqual(self.res["ece"], 1.75 / 4)

    def test_threshold_curve(self):
        cur = self.res["thresholds"].set_index("threshold")
        self.assertEqual(len(cur), 21)
        # 5 reads have a usable confidence; r5 (Unassigned) has no call
        self.assertEqual(cur.loc[0.0, "n_retained"], 4)
        self.assertAlmostEqual(cur.loc[0.0, "retained_share"], 0.8)
        self.assertAlmostEqual(cur.loc[0.0, "accuracy"], 0.5)
        self.assertEqual(cur.loc[0.6, "n_retained"], 3)
        self.assertAlmostEqual(cur.loc[0.6, "accuracy"], 2 / 3)
        self.assertEqual(cur.loc[0.7, "n_retained"], 3)   # 0.7 >= 0.7
        self.assertAlmostEqual(cur.loc[0.95, "accuracy"], 1.0)
        self.assertEqual(cur.loc[1.0, "n_retained"], 0)
        self.assertTrue(math.isnan(cur.loc[1.0, "accuracy"]))

    def test_confusion_of_top_genera(self):
        table = confusion(self.res["expected"], self.res["predicted"], 5, 2)
        self.assertEqual(list(table.index),
                         ["g__G1", "g__G2", "other (expected)"])
        self.assertEqual(list(table.columns),
                         ["g__G1", "g__G2", "(no call at rank)"])
        self.assertEqual(table.to_numpy().tolist(),
                         [[2, 1, 1], [0, 1, 0], [0, 0, 1]])

    def test_missing_reads_name_ids_and_fix(self):
        extra = pd.DataFrame({"Taxon": ["k__F", "k__F"]},
                             index=["x1", "x2"])
        with self.assertRaisesRegex(
                ValueError, r"2 of the 8 reads of 'mine' are missing from "
                r"the expected taxonomy, e\.g\. 'x1', 'x2'.*filter"):
            evaluate(pd.concat([PREDICTED, extra]), EXPECTED, "mine")

    def test_without_confidence_column(self):
        res = evaluate(PREDICTED[["Taxon"]], EXPECTED, "no-conf")
        self.assertFalse(res["has_confidence"])
        self.assertIsNone(res["reliability"])
        self.assertIsNone(res["thresholds"])
        self.assertTrue(math.isnan(res["ece"]))
        self.assertEqual(res["rank_metrics"]["correct"].tolist(),
                         [c[0] for c in COUNTS.values()])


def _read_tsv(data_dir, name, **kw):
    return pd.read_csv(os.path.join(data_dir, name), sep="\t", **kw)


class VisualizerTests(TestPluginBase):
    """The real Artifact API on a fitted classifier and bundled reads; the
    pages are rendered once per class in Chromium."""
    package = "q2_barcodemamba.tests"

    @classmethod
    def setUpClass(cls):
        from qiime2.plugins import barcodemamba
        cls.tmp = tempfile.TemporaryDirectory()
        cls.clf = tiny_classifier()
        clf_art = qiime2.Artifact.import_data(
            "BarcodeMambaClassifier", cls.clf,
            view_type=TaxonomicClassifier)
        viz, = barcodemamba.visualizers.summarize_classifier(
            classifier=clf_art)
        cls.summary_dir = cls.unpack(viz, "summary")

        ids, seqs, tax = small_reference()
        query = dict(list(zip(ids, seqs))[::25])          # 50 real reads
        reads = qiime2.Artifact.import_data(
            "FeatureData[Sequence]", pd.Series(query), pd.Series)
        expected = pd.Series(tax, name="Taxon")
        expected.index.name = "Feature ID"
        cls.expected = expected
        cls.expected_art = qiime2.Artifact.import_data(
            "FeatureData[Taxonomy]", expected)
        auto, = barcodemamba.methods.classify(reads=reads, classifier=clf_art)
        full, = barcodemamba.methods.classify(reads=reads, classifier=clf_art,
                                              confidence="disable")
        no_conf = auto.view(pd.DataFrame)[["Taxon"]]
        cls.classifications = [auto.view(pd.DataFrame),
                               full.view(pd.DataFrame), no_conf]
        cls.arts = [auto, full, qiime2.Artifact.import_data(
            "FeatureData[Taxonomy]", no_conf)]
        cls.labels = ["auto", "disable", "no-confidence"]
        viz, = barcodemamba.visualizers.evaluate_classifications(
            classifications=cls.arts, expected_taxonomy=cls.expected_art,
            labels=cls.labels)
        cls.eval_dir = cls.unpack(viz, "evaluation")
        cls.results = [evaluate(df, expected, lab)
                       for df, lab in zip(cls.classifications, cls.labels)]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def unpack(cls, viz, name):
        path = os.path.join(cls.tmp.name, name + ".qzv")
        viz.save(path)
        return browser.extract_visualization(
            path, os.path.join(cls.tmp.name, name))

    # ---------------------------------------------------- summarize
    def test_summary_files_and_numbers(self):
        d = self.summary_dir
        for f in ("index.html", "training-curves.png",
                  "validation-accuracy.png", "calibration.png",
                  "calibration.tsv", "training-history.tsv",
                  "classes-per-rank.tsv", "configuration.tsv",
                  "classifier-summary.txt", "classifier-config.json"):
            self.assertTrue(os.path.getsize(os.path.join(d, f)) > 0, f)
        cal = _read_tsv(d, "calibration.tsv")
        np.testing.assert_allclose(cal["right_call_rate"],
                                   self.clf.calibration["right_call_rate"],
                                   rtol=1e-5)
        classes = _read_tsv(d, "classes-per-rank.tsv")
        self.assertEqual(classes["n_classes"].tolist(),
                         self.clf.labels.n_classes)
        hist = _read_tsv(d, "training-history.tsv")
        h = self.clf.summary["history"]
        self.assertEqual(len(hist), len(h))
        np.testing.assert_allclose(hist["train_loss"],
                                   [r["train_loss"] for r in h], rtol=1e-5)
        first = [r for r in h if not r.get("refit")]
        np.testing.assert_allclose(
            hist["val_accuracy_genus"][:len(first)],
            [r["val_accuracy"]["genus"] for r in first], rtol=1e-5)
        self.assertEqual(hist["run"].tolist(),
                         ["refit" if r.get("refit") else "fit" for r in h])
        text = open(os.path.join(d, "classifier-summary.txt")).read()
        self.assertIn(f"{self.clf.net.num_parameters():,} parameters", text)
        self.assertIn(f"'auto' = {self.clf.calibration['best_confidence']}",
                      text)
        self.assertIn(f"Reference memory of {len(self.clf.memory):,} reads",
                      text)

    # ---------------------------------------------------- evaluate
    def test_evaluation_files_match_computed_metrics(self):
        d = self.eval_dir
        for f in ("index.html", "rank-rates.png", "reliability.png",
                  "confidence-thresholds.png", "summary.tsv",
                  "rank-metrics.tsv", "reliability.tsv",
                  "confidence-thresholds.tsv", "per-read.tsv",
                  "confusion-1.tsv", "confusion-1.png", "confusion-3.png"):
            self.assertTrue(os.path.getsize(os.path.join(d, f)) > 0, f)
        metrics = _read_tsv(d, "rank-metrics.tsv")
        for res in self.results:
            got = metrics[metrics["classification"] == res["label"]]
            want = res["rank_metrics"]
            self.assertEqual(got["rank"].tolist(), RANKS7)
            for col in ("correct", "misclassified", "under_call",
                        "over_call"):
                self.assertEqual(got[col].tolist(), want[col].tolist())
            np.testing.assert_allclose(got["accuracy"], want["accuracy"],
                                       rtol=1e-5)
            self.assertEqual(got["n_reads"].iloc[0], 50)
        # confidence 'disable' never under-calls; the tiny model is right
        # at genus for most of these (training) reads
        full = self.results[1]["rank_metrics"].set_index("rank")
        self.assertEqual(full["under_call"].sum(), 0)
        self.assertGreater(full.loc["genus", "accuracy"], 0.5)
        thr = _read_tsv(d, "confidence-thresholds.tsv")
        self.assertEqual(sorted(set(thr["classification"])),
                         ["auto", "disable"])   # no-confidence has none
        want = self.results[0]["thresholds"]
        got = thr[thr["classification"] == "auto"]
        np.testing.assert_allclose(got["retained_share"],
                                   want["retained_share"], rtol=1e-5)
        summary = _read_tsv(d, "summary.tsv").set_index("classification")
        for res in self.results[:2]:
            self.assertAlmostEqual(
                summary.loc[res["label"], "expected_calibration_error"],
                res["ece"], places=5)
        self.assertTrue(math.isnan(
            summary.loc["no-confidence", "expected_calibration_error"]))
        conf1 = _read_tsv(d, "confusion-1.tsv", index_col=0)
        self.assertEqual(int(conf1.to_numpy().sum()), 50)
        per_read = _read_tsv(d, "per-read.tsv")
        self.assertEqual(len(per_read), 150)

    def test_missing_reads_error_through_artifact_api(self):
        from qiime2.plugins import barcodemamba
        partial = self.expected.drop(self.classifications[0].index[:3])
        art = qiime2.Artifact.import_data("FeatureData[Taxonomy]", partial)
        with self.assertRaisesRegex(ValueError,
                                    r"3 of the 50 reads of 'classification-"
                                    r"1' are missing .*filter-seqs"):
            barcodemamba.visualizers.evaluate_classifications(
                classifications=self.arts[:1], expected_taxonomy=art)

    def test_bad_labels_are_rejected(self):
        from qiime2.plugins import barcodemamba
        with self.assertRaisesRegex(ValueError, "1 labels were given for 2"):
            barcodemamba.visualizers.evaluate_classifications(
                classifications=self.arts[:2],
                expected_taxonomy=self.expected_art, labels=["a"])

    # ---------------------------------------------------- browser
    def rendered(self, data_dir):
        if browser.find_chromium() is None:
            if os.environ.get("Q2BM_ALLOW_NO_BROWSER") == "1":
                self.skipTest("Chromium not installed and "
                              "Q2BM_ALLOW_NO_BROWSER=1")
            self.fail("Chromium is not installed: apt-get install chromium "
                      "(make test installs it), or set "
                      "Q2BM_ALLOW_NO_BROWSER=1 to skip the browser tests.")
        page = browser.check_page(os.path.join(data_dir, "index.html"))
        self.assertEqual(page["errors"], [])
        self.assertEqual(page["jquery"], "function")  # q2templates assets
        for img in page["images"]:
            self.assertTrue(img["complete"] and img["naturalWidth"] > 0,
                            img)
        return page

    def test_summary_page_in_browser(self):
        page = self.rendered(self.summary_dir)
        srcs = {i["src"] for i in page["images"]}
        self.assertLessEqual({"training-curves.png", "validation-accuracy.png",
                              "calibration.png"}, srcs)
        text = lambda i: browser.element_text(page["dom"], i)  # noqa: E731
        cal = self.clf.calibration
        self.assertEqual(text("temperature"), f"{cal['temperature']:.4f}")
        self.assertEqual(text("best-confidence"),
                         f"{cal['best_confidence']:.4f}")
        self.assertEqual(text("n-reference-reads"),
                         f"{self.clf.summary['n_reference_reads']:,}")
        mix = cal["mixture"]
        self.assertTrue(text("mixture").startswith(
            f"{mix['net']:g} / {mix['kmer']:g} / {mix['emb']:g} (k {mix['k']}"))
        self.assertEqual(text("memory-reads"), f"{len(self.clf.memory):,}")
        self.assertEqual(text("vocab-size"),
                         str(self.clf.tokenizer.vocab_size))
        for rank, n in zip(self.clf.labels.rank_names,
                           self.clf.labels.n_classes):
            self.assertEqual(text(f"classes-{rank}"), str(n))

    def test_evaluation_page_in_browser(self):
        page = self.rendered(self.eval_dir)
        srcs = [i["src"] for i in page["images"]]
        for f in ("rank-rates.png", "reliability.png",
                  "confidence-thresholds.png", "confusion-1.png",
                  "confusion-2.png", "confusion-3.png"):
            self.assertIn(f, srcs)
        text = lambda i: browser.element_text(page["dom"], i)  # noqa: E731
        for k, res in enumerate(self.results, start=1):
            m = res["rank_metrics"].set_index("rank")
            for rank in RANKS7:
                self.assertEqual(text(f"accuracy-{k}-{rank}"),
                                 f"{m.loc[rank, 'accuracy']:.4f}")
                self.assertEqual(text(f"over-call-{k}-{rank}"),
                                 f"{m.loc[rank, 'over_call_rate']:.4f}")
            self.assertEqual(text(f"n-reads-{k}"), "50")
        self.assertEqual(text("ece-1"), f"{self.results[0]['ece']:.4f}")
        self.assertEqual(text("ece-3"), "n/a")
        self.assertIn("'no-confidence' has no usable Confidence", page["dom"])


class BrowserCheckTests(unittest.TestCase):
    """The browser check itself catches a broken page (negative control)."""

    def test_broken_page_reports_errors_and_missing_image(self):
        if browser.find_chromium() is None:
            if os.environ.get("Q2BM_ALLOW_NO_BROWSER") == "1":
                self.skipTest("Chromium not installed and "
                              "Q2BM_ALLOW_NO_BROWSER=1")
            self.fail("Chromium is not installed: apt-get install chromium "
                      "(make test installs it).")
        with tempfile.TemporaryDirectory() as d:
            index = os.path.join(d, "index.html")
            with open(index, "w") as fh:
                fh.write("<html><head></head><body><p id='n'>0.5000</p>"
                         "<img src='missing.png'>"
                         "<script>notDefined();</script></body></html>")
            page = browser.check_page(index)
        self.assertEqual(browser.element_text(page["dom"], "n"), "0.5000")
        self.assertEqual(page["images"][0]["naturalWidth"], 0)
        joined = " ".join(page["errors"])
        self.assertIn("notDefined", joined)
        self.assertIn("missing.png", joined)
