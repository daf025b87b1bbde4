"""The documentation's code runs verbatim: the Python example of
docs/artifact-api.md and every bash block of docs/tutorial.md; the new
pages' relative links and images resolve. Needs the source checkout (this
file lives in its top-level tests/)."""
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import unittest

import pandas as pd
import qiime2
import qiime2.sdk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
# A bash block right after this comment needs these actions; it is skipped
# (with the reason) only while the plugin does not register them.
MARKER = re.compile(r"<!--\s*requires-actions:\s*([^>]*?)\s*-->\s*$")


def code_blocks(page: str, lang: str) -> list:
    """[(actions the block requires, code)] of the ```lang blocks."""
    with open(os.path.join(DOCS, page)) as fh:
        lines = fh.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == f"```{lang}":
            marker = MARKER.search(lines[i - 1]) if i else None
            end = lines.index("```", i + 1)
            blocks.append((marker.group(1).split() if marker else [],
                           "\n".join(lines[i + 1:end]) + "\n"))
            i = end
        i += 1
    return blocks


def registered_actions() -> set:
    plugin = qiime2.sdk.PluginManager().plugins["barcodemamba"]
    return {a.replace("_", "-") for a in plugin.actions}


def result_type(path: str) -> str:
    return str(qiime2.sdk.Result.peek(path).type)


class ArtifactApiDocTests(unittest.TestCase):
    def test_python_example_runs_and_views_a_taxonomy_dataframe(self):
        blocks = code_blocks("artifact-api.md", "python")
        self.assertEqual(len(blocks), 1)
        namespace = {"__name__": "__main__"}
        printed = io.StringIO()
        cwd = os.getcwd()
        os.chdir(ROOT)  # "runs verbatim from the repository root"
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(blocks[0][1], "docs/artifact-api.md", "exec"),
                     namespace)
        finally:
            os.chdir(cwd)
        result, query_ids = namespace["result"], namespace["query_ids"]
        self.assertIsInstance(result, pd.DataFrame)
        self.assertEqual(result.index.name, "Feature ID")
        self.assertEqual(set(result.index), query_ids)
        self.assertEqual(len(query_ids), 32)  # every 10th of 311 reads
        self.assertEqual(list(result.columns[:2]), ["Taxon", "Confidence"])
        confidence = result["Confidence"].astype(float)
        self.assertTrue(((confidence >= 0) & (confidence <= 1)).all())
        self.assertTrue(result["Taxon"].str.match(
            r"^(k__Fungi(;[a-z]__\S+)*|Unassigned)$").all())
        lines = printed.getvalue().splitlines()
        self.assertEqual(len(lines), len(query_ids) + 1)
        self.assertEqual({ln.split("\t")[0] for ln in lines[:-1]}, query_ids)
        right = int(re.match(r"right genus: (\d+) of 32 held-out reads$",
                             lines[-1]).group(1))
        # three genera: a classifier that learnt nothing gets about 1/3
        self.assertGreater(right, 32 / 3, lines[-1])
        saved = os.path.join(namespace["workdir"], "classifier.qza")
        self.assertEqual(result_type(saved), "BarcodeMambaClassifier")


class TutorialTests(unittest.TestCase):
    """Runs the tutorial's bash blocks once, in order, in an empty
    directory, with the environment's bin/ (qiime, python) first on PATH."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        actions = registered_actions()
        cls.skipped, script = [], ["set -euo pipefail -x"]
        cls.blocks = code_blocks("tutorial.md", "bash")
        for requires, code in cls.blocks:
            missing = [a for a in requires if a not in actions]
            if missing:
                cls.skipped.append(f"tutorial block needing {missing} "
                                   f"skipped: the plugin does not register "
                                   f"{', '.join(missing)} yet")
            else:
                script.append(code)
        env = dict(os.environ, PATH=os.path.join(sys.prefix, "bin")
                   + os.pathsep + os.environ.get("PATH", ""))
        cls.result = subprocess.run(["bash", "-c", "\n".join(script)],
                                 cwd=cls.dir, env=env, capture_output=True,
                                 text=True, timeout=1800)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_tutorial_commands_succeed(self):
        self.assertGreaterEqual(len(self.blocks), 8)
        self.assertEqual(self.result.returncode, 0,
                         (self.result.stdout + self.result.stderr)[-6000:])

    def test_tutorial_splits_classifies_and_plots(self):
        self.assertEqual(self.result.returncode, 0,
                         self.result.stderr[-3000:])
        self.assertEqual(result_type(self.path("reference.qza")),
                         "FeatureData[Sequence]")
        query = qiime2.Artifact.load(self.path("query.qza")).view(pd.Series)
        reference = qiime2.Artifact.load(
            self.path("reference.qza")).view(pd.Series)
        self.assertEqual(len(query), 369)  # every 10th of 3,692 reads
        self.assertEqual(len(reference), 3692 - 369)
        self.assertFalse(set(query.index) & set(reference.index))
        self.assertEqual(result_type(self.path("classifier.qza")),
                         "BarcodeMambaClassifier")
        calls = pd.read_csv(self.path("query-classification/taxonomy.tsv"),
                            sep="\t", index_col=0)
        self.assertEqual(set(calls.index), set(query.index))
        self.assertEqual(list(calls.columns), ["Taxon", "Confidence"])
        mock = qiime2.Artifact.load(
            self.path("mock9-classification.qza")).view(pd.DataFrame)
        self.assertEqual(len(mock), 13)  # one record per member species
        for viz in ("mock9-classification.qzv", "mock9-taxa-barplot.qzv"):
            self.assertEqual(result_type(self.path(viz)), "Visualization")
        table = qiime2.Artifact.load(self.path("mock9-table.qza"))
        self.assertEqual(table.view(pd.DataFrame).sum(axis=1).tolist(),
                         [1600.0] * 3)

    def test_tutorial_evaluation_views(self):
        if self.skipped:
            self.skipTest("; ".join(self.skipped))
        self.assertEqual(self.result.returncode, 0,
                         self.result.stderr[-3000:])
        for viz in ("query-evaluation.qzv", "classifier-summary.qzv"):
            self.assertEqual(result_type(self.path(viz)), "Visualization")


class LinkTests(unittest.TestCase):
    PAGES = ["tutorial.md", "artifact-api.md", "model-card.md", "index.md",
             os.path.join("..", "README.md")]

    def test_relative_links_and_images_of_the_pages_resolve(self):
        for page in self.PAGES:
            with open(os.path.join(DOCS, page)) as fh:
                text = fh.read()
            for image, target in re.findall(r"(!?)\[[^\]]*\]\(([^)\s]+)\)",
                                            text):
                if re.match(r"[a-z]+:", target) or target.startswith("#"):
                    continue
                path = os.path.normpath(os.path.join(
                    DOCS, os.path.dirname(page), target.split("#")[0]))
                what = "image" if image else "link"
                self.assertTrue(os.path.exists(path),
                                f"{page}: broken {what} {target}")
        for page in ("tutorial.md", "artifact-api.md", "model-card.md"):
            with open(os.path.join(DOCS, "index.md")) as fh:
                self.assertIn(f"({page})", fh.read())
            with open(os.path.join(ROOT, "README.md")) as fh:
                self.assertIn(f"(docs/{page})", fh.read())


if __name__ == "__main__":
    unittest.main()
