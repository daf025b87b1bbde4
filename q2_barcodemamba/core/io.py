"""Save/load classifier directories: safetensors + JSON, never pickle.

Layout (``FORMAT_VERSION`` 4)::

    config.json        format_version, package_version, model_config,
                       train_config, calibration (temperature, neighbour
                       mixture, per-rank calibrator, threshold), summary
    tokenizer.json     HF tokenizers BPE model
    labels.json        rank names, classes per rank, leaf lineages
    model.safetensors  network weights, ``orientation_kmers`` (uint8 bit
                       set) and the reference memory ``memory.*``
                       (float16 embeddings, leaf index, read bytes)
                       and the validation evidence ``validation.*``
                       (the walk, evidence and kind of each scored
                       validation read, for ``novel_species``)

Format 3 (0.5) is format 4 without the ``ref_reads`` evidence (0.6:
how many reference reads the called taxon has, beside the k-mer
evidence): its calibrator uses the three features it was fitted on and it
classifies as it did.
Format 2 (0.2-0.4) has no ``validation.*`` tensors: it loads and
classifies as it did, without ``novel_species``/``novel_genera``.
Format 1 (before the reference memory) has no ``memory.*`` tensors and a
calibration of temperature and threshold only: it still loads and
classifies as it did (network probabilities, summed confidence).

Loading validates every file and says what is wrong and which package
version wrote the directory. Writing goes to a temporary sibling directory
that is renamed into place, so an interrupted save leaves nothing behind.
"""
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._version import __version__
from .backbones import PretrainedBackbone
from .classifier import TaxonomicClassifier
from .config import ModelConfig, TrainConfig
from .data import KmerOrienter
from .model import Backbone, BarcodeMambaNet
from .taxonomy import LabelEncoder
from .tokenizer import DNATokenizer
from .heads import head_sizes
from .abstention import Caller
from .memory import ReferenceMemory

FORMAT_VERSION = 4
# the validation evidence in model.safetensors (validation.<name>) and
# the dtype each is stored and checked in
EVIDENCE = {"chosen": torch.int64, "mass": torch.float64, "y": torch.int64,
            "folds": torch.int64, "kind": torch.int64, "X": torch.float64}
BACKBONE_FORMAT_VERSION = 1
FILES = ("config.json", "tokenizer.json", "labels.json", "model.safetensors")
ORIENT_KEY = "orientation_kmers"


def write_classifier_files(clf: TaxonomicClassifier, path: str) -> None:
    """Write the four files of a fitted classifier into existing ``path``."""
    clf._check_fitted()
    config = {
        "format_version": FORMAT_VERSION,
        "package": "q2-barcodemamba",
        "package_version": __version__,
        "preset": clf.preset_name,
        "model_config": clf.model_config.to_dict(),
        "train_config": clf.train_config.to_dict(),
        "orientation_k": clf.orienter.k,
        "calibration": clf.calibration,
        "summary": clf.summary,
    }
    if clf.evidence is not None:
        config["validation_evidence"] = {
            "features": list(clf.evidence["features"])}
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh, indent=1)
    with open(os.path.join(path, "tokenizer.json"), "w") as fh:
        fh.write(clf.tokenizer.to_json())
    with open(os.path.join(path, "labels.json"), "w") as fh:
        json.dump(clf.labels.to_dict(), fh)
    tensors = {k: v.detach().cpu().contiguous()
               for k, v in clf.net.state_dict().items()}
    tensors[ORIENT_KEY] = torch.from_numpy(clf.orienter.bits.copy())
    if clf.memory is not None:
        tensors.update(clf.memory.to_tensors())
    if clf.evidence is not None:
        for name, dtype in EVIDENCE.items():
            if clf.evidence.get(name) is not None:
                tensors[f"validation.{name}"] = torch.as_tensor(
                    np.ascontiguousarray(clf.evidence[name])).to(dtype)
    save_file(tensors, os.path.join(path, "model.safetensors"),
              metadata={"format_version": str(FORMAT_VERSION),
                        "package_version": __version__})


def _save_atomically(write, obj, path: str) -> None:
    """Create directory ``path`` by ``write(obj, tmp)`` into a temporary
    sibling that is renamed into place: an interrupted save leaves nothing."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"{path} already exists; choose a new path.")
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        write(obj, tmp)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_classifier(clf: TaxonomicClassifier, path: str) -> None:
    """Atomically create directory ``path`` holding the classifier."""
    _save_atomically(write_classifier_files, clf, path)


def _read_json(path: str, name: str, writer: str) -> dict:
    fp = os.path.join(path, name)
    if not os.path.isfile(fp):
        raise ValueError(f"The classifier lacks {name} (written by "
                         f"{writer}); it is incomplete: re-create it with "
                         "fit-classifier.")
    try:
        with open(fp) as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name} of the classifier (written by {writer}) "
                         f"is not valid JSON: {exc}.") from None


def _read_tokenizer(path: str, mcfg: ModelConfig, what: str,
                    writer: str) -> DNATokenizer:
    """tokenizer.json of a classifier or backbone directory, checked
    against the model's vocabulary size."""
    tok_path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tok_path):
        raise ValueError(f"The {what} lacks tokenizer.json (written by "
                         f"{writer}).")
    with open(tok_path) as fh:
        tokenizer = DNATokenizer.from_json(fh.read())
    if tokenizer.vocab_size != mcfg.vocab_size:
        raise ValueError(f"tokenizer.json has {tokenizer.vocab_size} tokens "
                         f"but the {what}'s config.json says vocab_size "
                         f"{mcfg.vocab_size} (written by {writer}).")
    return tokenizer


def read_config(path: str) -> dict:
    """Read and version-check config.json."""
    cfg = _read_json(path, "config.json", "an unknown version")
    writer = f"q2-barcodemamba {cfg.get('package_version', '?')}"
    fv = cfg.get("format_version")
    if cfg.get("kind") == "backbone":
        raise ValueError("This is a pretrained backbone "
                         "(BarcodeMambaBackbone), not a classifier: pass it "
                         "to fit-classifier's backbone input.")
    if not isinstance(fv, int):
        raise ValueError(f"config.json has no integer format_version "
                         f"(written by {writer}); this is not a "
                         "q2-barcodemamba classifier.")
    if fv > FORMAT_VERSION:
        raise ValueError(
            f"This classifier has format version {fv} and was written by "
            f"{writer}; this q2-barcodemamba {__version__} reads format "
            f"version {FORMAT_VERSION} and older. Upgrade q2-barcodemamba, or "
            "re-train the classifier with this version.")
    for key in ("model_config", "train_config", "calibration"):
        if key not in cfg:
            raise ValueError(f"config.json (written by {writer}) lacks "
                             f"{key!r}.")
    cfg["_writer"] = writer
    return cfg


def load_classifier(path: str, map_location: str = "cpu"
                    ) -> TaxonomicClassifier:
    """Load and validate a classifier directory (weights go to CPU)."""
    cfg = read_config(path)
    writer = cfg["_writer"]
    try:
        mcfg = ModelConfig.from_dict(cfg["model_config"])
        tcfg = TrainConfig(**cfg["train_config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config.json (written by {writer}) has an invalid "
                         f"configuration: {exc}") from None
    labels = LabelEncoder.from_dict(_read_json(path, "labels.json", writer))
    tokenizer = _read_tokenizer(path, mcfg, "classifier", writer)
    w_path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(w_path):
        raise ValueError(f"The classifier lacks model.safetensors (written "
                         f"by {writer}).")
    try:
        tensors = load_file(w_path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"model.safetensors is damaged or truncated "
                         f"(written by {writer}): {exc}") from None
    bits = tensors.pop(ORIENT_KEY, None)
    if bits is None:
        raise ValueError(f"model.safetensors lacks {ORIENT_KEY!r} (written "
                         f"by {writer}).")
    memory = _read_memory(tensors, labels, mcfg, writer)
    evidence = _read_evidence(tensors, cfg, labels, writer)
    try:
        n_classes = head_sizes(labels, tcfg.heads)
    except ValueError as exc:
        raise ValueError(f"config.json (written by {writer}): {exc}") from None
    net = BarcodeMambaNet(mcfg, n_classes)
    expected = net.state_dict()
    problems = [k for k in expected if k not in tensors]
    problems += [k for k in tensors if k not in expected]
    problems += [f"{k} {tuple(tensors[k].shape)} != "
                 f"{tuple(v.shape)}" for k, v in expected.items()
                 if k in tensors and tensors[k].shape != v.shape]
    if problems:
        raise ValueError(f"model.safetensors does not match config.json/"
                         f"labels.json (written by {writer}): "
                         f"{problems[:5]}")
    net.load_state_dict(tensors)
    net.eval()
    clf = TaxonomicClassifier(cfg.get("preset", "custom"), mcfg, tcfg)
    clf.tokenizer, clf.labels, clf.net = tokenizer, labels, net
    clf.orienter = KmerOrienter(bits.numpy().astype(np.uint8),
                                cfg.get("orientation_k", 10))
    clf.calibration = cfg["calibration"]
    clf.memory = memory
    clf.evidence = evidence
    _check_calibration(clf.calibration, labels, memory, writer)
    clf.summary = cfg.get("summary", {})
    return clf


def _read_memory(tensors: dict, labels: LabelEncoder, mcfg: ModelConfig,
                 writer: str):
    """Pop the ``memory.*`` tensors and check them against the labels and
    the embedding width; None for a classifier without memory."""
    mem = {k: tensors.pop(k) for k in list(tensors)
           if k.startswith("memory.")}
    try:
        memory = ReferenceMemory.from_tensors(mem)
    except ValueError as exc:
        raise ValueError(f"model.safetensors (written by {writer}): "
                         f"{exc}") from None
    if memory is None:
        return None
    leaf = memory.leaf
    if memory.embeddings.shape[1] != mcfg.d_model or (len(leaf) and (
            int(leaf.max()) >= len(labels.leaves) or int(leaf.min()) < -1)) \
            or int(memory.seq_offsets[-1]) != len(memory.seq_data):
        raise ValueError(f"the reference memory in model.safetensors does "
                         f"not match config.json/labels.json (written by "
                         f"{writer}): re-create the classifier.")
    return memory


def _read_evidence(tensors: dict, cfg: dict, labels: LabelEncoder,
                   writer: str):
    """Pop the ``validation.*`` tensors (format 3) and check their shapes;
    None for a classifier without them (format 1 and 2)."""
    ev = {k[len("validation."):]: tensors.pop(k) for k in list(tensors)
          if k.startswith("validation.")}
    if not ev:
        return None
    meta = cfg.get("validation_evidence") or {}
    R = len(labels.rank_names)
    try:
        out = {name: ev[name].numpy() for name in EVIDENCE if name != "X"}
        out["X"] = ev["X"].numpy() if "X" in ev else None
        out["features"] = [str(f) for f in meta["features"]]
        n = len(out["kind"])
        ok = (all(out[k].shape == (n, R) for k in ("chosen", "mass", "y"))
              and out["folds"].shape == (n,) and set(ev) <= set(EVIDENCE)
              and all(ev[k].dtype == EVIDENCE[k] for k in ev)
              and (out["X"] is None or out["X"].shape
                   == (n, R, len(out["features"]))))
    except (KeyError, TypeError) as exc:
        ok = False
        detail = f" ({exc})"
    else:
        detail = ""
    if not ok:
        raise ValueError(f"the validation evidence in model.safetensors "
                         f"does not match config.json/labels.json (written "
                         f"by {writer}){detail}: re-create the classifier.")
    return out


def _check_calibration(cal: dict, labels: LabelEncoder, memory,
                       writer: str) -> None:
    """The calibration must be usable by :class:`.abstention.Caller`."""
    try:
        caller = Caller(cal, labels, memory)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"config.json (written by {writer}) has an invalid "
                         f"calibration: {exc}") from None
    if caller.calibrator is not None and \
            caller.calibrator.n_ranks != len(labels.rank_names):
        raise ValueError(f"config.json (written by {writer}): the "
                         "calibrator's ranks do not match labels.json.")
    m = caller.mixture
    if (m.kmer > 0 or m.emb > 0) and memory is None:
        raise ValueError(f"config.json (written by {writer}) mixes in "
                         "neighbour votes but model.safetensors has no "
                         "reference memory: re-create the classifier.")


# ------------------------------------------------------------ backbones
BACKBONE_FILES = ("config.json", "tokenizer.json", "backbone.safetensors")


def write_backbone_files(bb, path: str) -> None:
    """Write a :class:`.backbones.PretrainedBackbone` into existing
    ``path``."""
    config = {
        "format_version": BACKBONE_FORMAT_VERSION,
        "kind": "backbone",
        "package": "q2-barcodemamba",
        "package_version": __version__,
        "model_config": bb.model_config.to_dict(),
        "info": bb.info,
    }
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh, indent=1)
    with open(os.path.join(path, "tokenizer.json"), "w") as fh:
        fh.write(bb.tokenizer.to_json())
    save_file({k: v.detach().cpu().contiguous() for k, v in bb.state.items()},
              os.path.join(path, "backbone.safetensors"),
              metadata={"format_version": str(BACKBONE_FORMAT_VERSION),
                        "package_version": __version__})


def save_backbone(bb, path: str) -> None:
    """Atomically create directory ``path`` holding the backbone."""
    _save_atomically(write_backbone_files, bb, path)


def load_backbone(path: str):
    """Load and validate a backbone directory written by
    :func:`write_backbone_files` (weights on CPU)."""
    cfg = _read_json(path, "config.json", "an unknown version")
    writer = f"q2-barcodemamba {cfg.get('package_version', '?')}"
    fv = cfg.get("format_version")
    if cfg.get("kind") != "backbone" or not isinstance(fv, int):
        raise ValueError(f"config.json (written by {writer}) does not "
                         "describe a q2-barcodemamba backbone.")
    if fv > BACKBONE_FORMAT_VERSION:
        raise ValueError(
            f"This backbone has format version {fv} and was written by "
            f"{writer}; this q2-barcodemamba {__version__} reads format "
            f"version {BACKBONE_FORMAT_VERSION} and older. Upgrade q2-barcodemamba.")
    try:
        mcfg = ModelConfig.from_dict(cfg["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"config.json of the backbone (written by {writer})"
                         f" has an invalid model_config: {exc}") from None
    tokenizer = _read_tokenizer(path, mcfg, "backbone", writer)
    w_path = os.path.join(path, "backbone.safetensors")
    try:
        tensors = load_file(w_path, device="cpu")
    except (SafetensorError, OSError, ValueError, FileNotFoundError) as exc:
        raise ValueError(f"backbone.safetensors is missing, damaged or "
                         f"truncated (written by {writer}): {exc}") from None
    expected = Backbone(mcfg).state_dict()
    problems = sorted(set(expected) ^ set(tensors))
    problems += [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}"
                 for k, v in expected.items()
                 if k in tensors and tensors[k].shape != v.shape]
    if problems:
        raise ValueError(f"backbone.safetensors does not match its "
                         f"config.json (written by {writer}): {problems[:5]}")
    return PretrainedBackbone(mcfg, tokenizer, tensors, cfg.get("info", {}))
