"""Plugin layer with real QIIME 2: formats, transformers, Artifact API."""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pandas as pd
import qiime2
from qiime2.plugin import ValidationError
from qiime2.plugin.testing import TestPluginBase

from q2_barcodemamba._formats import BarcodeMambaClassifierDirFmt
from q2_barcodemamba.core.backbones import shipped_backbone
from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import FINETUNE_LR
from q2_barcodemamba.core.backbones import PretrainedBackbone
from q2_barcodemamba.core.io import save_classifier
from q2_barcodemamba.tests.helpers import (assert_safetensors,
                                           small_reference, tiny_classifier,
                                           write_reference)


class FormatTests(TestPluginBase):
    package = "q2_barcodemamba.tests"

    def saved(self):
        path = os.path.join(self.temp_dir.name, "clf")
        save_classifier(tiny_classifier(), path)
        return path

    def test_valid_directory_validates_at_min_and_max(self):
        fmt = BarcodeMambaClassifierDirFmt(self.saved(), mode="r")
        fmt.validate(level="min")
        fmt.validate(level="max")

    def test_truncated_weights_fail_validation(self):
        path = self.saved()
        w = os.path.join(path, "model.safetensors")
        data = open(w, "rb").read()
        open(w, "wb").write(data[: len(data) // 2])
        fmt = BarcodeMambaClassifierDirFmt(path, mode="r")
        with self.assertRaisesRegex(ValidationError,
                                    "damaged or truncated.*written by "
                                    "q2-barcodemamba"):
            fmt.validate(level="max")

    def test_malformed_json_fails_validation(self):
        path = self.saved()
        with open(os.path.join(path, "labels.json"), "w") as fh:
            fh.write("{not json")
        fmt = BarcodeMambaClassifierDirFmt(path, mode="r")
        with self.assertRaisesRegex(ValidationError, "labels.json.*JSON"):
            fmt.validate(level="min")

    def test_future_format_version_names_writer_and_fix(self):
        path = self.saved()
        cfg_path = os.path.join(path, "config.json")
        cfg = json.load(open(cfg_path))
        cfg["format_version"] = 99
        cfg["package_version"] = "9.9.9"
        json.dump(cfg, open(cfg_path, "w"))
        fmt = BarcodeMambaClassifierDirFmt(path, mode="r")
        with self.assertRaisesRegex(ValidationError,
                                    "format version 99.*9\\.9\\.9.*Upgrade"):
            fmt.validate(level="min")

    def test_missing_file_fails_validation(self):
        path = self.saved()
        os.remove(os.path.join(path, "tokenizer.json"))
        fmt = BarcodeMambaClassifierDirFmt(path, mode="r")
        with self.assertRaisesRegex(ValidationError, "tokenizer.json"):
            fmt.validate()

    def test_transformers_round_trip(self):
        clf = tiny_classifier()
        _, seqs, _ = small_reference()
        transformer = self.get_transformer(TaxonomicClassifier,
                                           BarcodeMambaClassifierDirFmt)
        fmt = transformer(clf)
        back = self.get_transformer(BarcodeMambaClassifierDirFmt,
                                    TaxonomicClassifier)(fmt)
        self.assertTrue((back.predict_proba(seqs[:16])
                         == clf.predict_proba(seqs[:16])).all())


class ArtifactAPITests(TestPluginBase):
    package = "q2_barcodemamba.tests"

    def test_fit_and_classify_through_artifact_api(self):
        from qiime2.plugins import barcodemamba
        ids, seqs, tax = small_reference()
        fasta, _ = write_reference(self.temp_dir.name, ids, seqs, tax)
        # the taxonomy lists 3 more ids than there are reads: accepted
        _, taxonomy = write_reference(self.temp_dir.name, ids + [
            "other-1", "other-2", "other-3"], seqs, {
            **tax, "other-1": tax[ids[0]], "other-2": tax[ids[1]],
            "other-3": tax[ids[2]]})
        reads = qiime2.Artifact.import_data("FeatureData[Sequence]", fasta)
        taxa = qiime2.Artifact.import_data("FeatureData[Taxonomy]", taxonomy)
        progress = io.StringIO()
        with contextlib.redirect_stderr(progress):
            clf, = barcodemamba.methods.fit_classifier(
                reference_reads=reads, reference_taxonomy=taxa, epochs=2,
                batch_size=32, n_threads=2)
        self.assertIn("3 records without a reference read ignored",
                      progress.getvalue())
        self.assertEqual(str(clf.type), "BarcodeMambaClassifier")
        # no pickle anywhere in the artifact
        with tempfile.TemporaryDirectory() as d:
            clf.save(os.path.join(d, "clf.qza"))
            shutil.unpack_archive(os.path.join(d, "clf.qza"), d, "zip")
            for root, _, files in os.walk(d):
                for f in files:
                    self.assertFalse(f.endswith((".pkl", ".pickle", ".pt")))
                    data = open(os.path.join(root, f), "rb").read()
                    if f == "model.safetensors":
                        assert_safetensors(data, f)
                    elif f.endswith(".json"):
                        self.assertTrue(data.startswith(b"{"), f)
        classification, = barcodemamba.methods.classify(
            reads=reads, classifier=clf, confidence="disable")
        df = classification.view(pd.DataFrame)
        self.assertEqual(list(df.columns), ["Taxon", "Confidence"])
        self.assertEqual(sorted(df.index), sorted(ids))
        conf = df["Confidence"].astype(float)
        self.assertTrue(((conf >= 0) & (conf <= 1)).all())
        # genus (rank 6) right for most training reads after 2 epochs
        genus = df["Taxon"].str.split(";").str[5]
        truth = pd.Series({i: tax[i].split(";")[5] for i in ids})
        self.assertGreater((genus == truth[df.index]).mean(), 0.5)
        # the result is usable as QIIME metadata (tabulate / barplot input)
        md = classification.view(qiime2.Metadata)
        self.assertEqual(md.id_count, len(ids))
        # a query mix of mostly new species: no more species calls at the
        # 'auto' threshold than with the validation's own mix
        depth = {}
        for share in (None, 0.95):
            out, = barcodemamba.methods.classify(
                reads=reads, classifier=clf, novel_species=share)
            taxa_ = out.view(pd.DataFrame)["Taxon"]
            depth[share] = (taxa_.str.count(";") >= 6).sum()
        self.assertLessEqual(depth[0.95], depth[None])
        # by default the shipped pretrained backbone was fine-tuned
        core = clf.view(TaxonomicClassifier)
        self.assertEqual(core.summary["backbone"]["name"], "backbone-tiny")
        self.assertEqual(core.train_config.learning_rate, FINETUNE_LR)
        self.assertEqual(core.tokenizer.to_json(),
                         shipped_backbone().tokenizer.to_json())


class BackboneTests(TestPluginBase):
    package = "q2_barcodemamba.tests"

    def test_pretrain_then_fine_tune_through_artifact_api(self):
        from qiime2.plugins import barcodemamba
        ids, seqs, tax = small_reference()
        fasta, taxonomy = write_reference(self.temp_dir.name, ids, seqs, tax)
        reads = qiime2.Artifact.import_data("FeatureData[Sequence]", fasta)
        taxa = qiime2.Artifact.import_data("FeatureData[Taxonomy]", taxonomy)
        ck = os.path.join(self.temp_dir.name, "ck")
        bb, = barcodemamba.methods.pretrain(
            sequences=reads, epochs=1, vocab_size=128, batch_size=64,
            checkpoint_dir=ck, n_threads=2)
        self.assertEqual(str(bb.type), "BarcodeMambaBackbone")
        self.assertEqual(sorted(os.listdir(ck)),
                         ["checkpoint.json", "checkpoint.safetensors"])
        core_bb = bb.view(PretrainedBackbone)
        self.assertEqual(core_bb.tokenizer.vocab_size, 128)
        self.assertEqual(len(core_bb.info["history"]), 1)
        with tempfile.TemporaryDirectory() as d:
            bb.save(os.path.join(d, "bb.qza"))
            shutil.unpack_archive(os.path.join(d, "bb.qza"), d, "zip")
            names = {f for _, _, fs in os.walk(d) for f in fs}
            self.assertTrue({"config.json", "tokenizer.json",
                             "backbone.safetensors"} <= names)
            self.assertFalse(any(f.endswith((".pkl", ".pt")) for f in names))
        clf, = barcodemamba.methods.fit_classifier(
            reference_reads=reads, reference_taxonomy=taxa, backbone=bb,
            epochs=1, refit=False, n_threads=2)
        core = clf.view(TaxonomicClassifier)
        self.assertEqual(core.tokenizer.to_json(),
                         core_bb.tokenizer.to_json())
        self.assertEqual(core.model_config.vocab_size, 128)
        self.assertIn("pretrained:tiny", core.summary["backbone"]["name"])
        # a classifier is not a backbone
        with self.assertRaises(TypeError):
            barcodemamba.methods.fit_classifier(
                reference_reads=reads, reference_taxonomy=taxa,
                backbone=clf, epochs=1)

    def test_damaged_backbone_fails_validation(self):
        from q2_barcodemamba._formats import BarcodeMambaBackboneDirFmt
        from q2_barcodemamba.core.backbones import shipped_backbone_path
        path = os.path.join(self.temp_dir.name, "bb")
        shutil.copytree(shipped_backbone_path(), path)
        BarcodeMambaBackboneDirFmt(path, mode="r").validate(level="max")
        w = os.path.join(path, "backbone.safetensors")
        data = open(w, "rb").read()
        open(w, "wb").write(data[: len(data) // 3])
        with self.assertRaisesRegex(ValidationError, "damaged or truncated"):
            BarcodeMambaBackboneDirFmt(path, mode="r").validate(level="max")


IMPORT_REFERENCE = [
    ("tools", "import", "--type", "FeatureData[Sequence]",
     "--input-path", "reads.fasta", "--output-path", "ref.qza"),
    ("tools", "import", "--type", "FeatureData[Taxonomy]",
     "--input-path", "taxonomy.tsv", "--output-path", "tax.qza")]


class CLITests(TestPluginBase):
    package = "q2_barcodemamba.tests"

    def qiime(self, *args):
        exe = os.path.join(os.path.dirname(sys.executable), "qiime")
        cmd = [exe] if os.path.exists(exe) else [
            sys.executable, "-c", "from q2cli.__main__ import qiime; qiime()"]
        return subprocess.run(cmd + list(args), capture_output=True,
                              text=True, cwd=self.temp_dir.name)

    def test_help_lists_actions(self):
        r = self.qiime("barcodemamba", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fit-classifier", r.stdout)
        self.assertIn("classify", r.stdout)
        self.assertIn("pretrain", r.stdout)

    def test_cli_pretrain_then_fit_with_backbone(self):
        ids, seqs, tax = small_reference()
        write_reference(self.temp_dir.name, ids[:200], seqs[:200], tax)
        steps = IMPORT_REFERENCE + [
            ("barcodemamba", "pretrain", "--i-sequences", "ref.qza",
             "--p-epochs", "1", "--p-vocab-size", "96", "--p-n-threads",
             "2", "--o-backbone", "bb.qza", "--verbose"),
            ("barcodemamba", "fit-classifier", "--i-reference-reads",
             "ref.qza", "--i-reference-taxonomy", "tax.qza", "--i-backbone",
             "bb.qza", "--p-epochs", "1", "--p-n-threads",
             "2", "--o-classifier", "clf.qza", "--verbose"),
        ]
        outs = []
        for step in steps:
            r = self.qiime(*step)
            self.assertEqual(r.returncode, 0, f"{step}: {r.stderr[-2000:]}")
            outs.append(r.stdout + r.stderr)
        self.assertIn("tokens/s", outs[2])       # progress is shown
        self.assertIn("fine-tuning the pretrained tiny backbone", outs[3])
        clf = qiime2.Artifact.load(os.path.join(self.temp_dir.name,
                                                "clf.qza"))
        self.assertEqual(clf.view(TaxonomicClassifier).tokenizer.vocab_size,
                         96)

    def test_cli_fit_then_classify_other_reads(self):
        ids, seqs, tax = small_reference()
        ref_ids, q_ids = ids[:-40], ids[-40:]
        fasta, taxonomy = write_reference(self.temp_dir.name, ref_ids,
                                          seqs[:-40], tax)
        with open(os.path.join(self.temp_dir.name, "query.fasta"), "w") as fh:
            for i, s in zip(q_ids, seqs[-40:]):
                fh.write(f">{i}\n{s}\n")
        steps = IMPORT_REFERENCE + [
            ("tools", "import", "--type", "FeatureData[Sequence]",
             "--input-path", "query.fasta", "--output-path", "query.qza"),
            ("barcodemamba", "fit-classifier", "--i-reference-reads",
             "ref.qza", "--i-reference-taxonomy", "tax.qza", "--p-epochs",
             "1", "--p-n-threads", "2", "--o-classifier", "clf.qza"),
            ("barcodemamba", "classify", "--i-reads", "query.qza",
             "--i-classifier", "clf.qza", "--p-confidence", "0.5",
             "--o-classification", "out.qza"),
            ("tools", "export", "--input-path", "out.qza", "--output-path",
             "out"),
        ]
        for step in steps:
            r = self.qiime(*step)
            self.assertEqual(r.returncode, 0, f"{step}: {r.stderr[-2000:]}")
        df = pd.read_csv(os.path.join(self.temp_dir.name, "out",
                                      "taxonomy.tsv"), sep="\t")
        self.assertEqual(list(df.columns), ["Feature ID", "Taxon",
                                            "Confidence"])
        self.assertEqual(sorted(df["Feature ID"]), sorted(q_ids))
        # truncation respected: every reported confidence >= 0.5 unless
        # Unassigned
        assigned = df[df["Taxon"] != "Unassigned"]
        self.assertTrue((assigned["Confidence"] >= 0.5).all())

    def test_cli_confidence_out_of_range_is_rejected_by_qiime(self):
        """Real inputs, so only the parameter can be what is refused: 0.5
        classifies, 1.5 is rejected by QIIME's Range check."""
        ids, seqs, tax = small_reference()
        write_reference(self.temp_dir.name, ids[:10], seqs[:10], tax)
        qiime2.Artifact.import_data(
            "FeatureData[Sequence]",
            os.path.join(self.temp_dir.name, "reads.fasta")).save(
            os.path.join(self.temp_dir.name, "reads.qza"))
        qiime2.Artifact.import_data(
            "BarcodeMambaClassifier", tiny_classifier()).save(
            os.path.join(self.temp_dir.name, "clf.qza"))
        args = ("barcodemamba", "classify", "--i-reads", "reads.qza",
                "--i-classifier", "clf.qza", "--p-n-threads", "2")
        ok = self.qiime(*args, "--p-confidence", "0.5",
                        "--o-classification", "ok.qza")
        self.assertEqual(ok.returncode, 0, ok.stderr[-2000:])
        bad = self.qiime(*args, "--p-confidence", "1.5",
                         "--o-classification", "bad.qza")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("1.5", bad.stderr)
        self.assertRegex(bad.stderr, r"(?i)confidence")
        self.assertFalse(os.path.exists(
            os.path.join(self.temp_dir.name, "bad.qza")))


class UsageExampleTests(TestPluginBase):
    package = "q2_barcodemamba.tests"

    def test_every_action_has_an_example(self):
        for name, action in self.plugin.actions.items():
            self.assertTrue(action.examples, name)

    def test_examples_run(self):
        self.execute_examples()
