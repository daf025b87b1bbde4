"""Directory format of a BarcodeMamba+ classifier (no pickle anywhere).

``config.json``, ``tokenizer.json``, ``labels.json`` are JSON;
``model.safetensors`` holds tensors only. Validation level ``min`` checks the
JSON files and versions; ``max`` loads and cross-checks everything.
"""
import json

from qiime2.plugin import ValidationError, model

from .core.io import load_backbone, load_classifier, read_config


class JSONFormat(model.TextFileFormat):
    def _validate_(self, level):
        try:
            with self.open() as fh:
                json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"{self.path.name} is not valid JSON: "
                                  f"{exc}") from None


class SafetensorsFormat(model.BinaryFileFormat):
    def _validate_(self, level):
        with self.open() as fh:
            head = fh.read(8)
        if len(head) < 8:
            raise ValidationError("model.safetensors is empty or truncated.")
        n = int.from_bytes(head, "little")
        if not 2 <= n <= 100_000_000:
            raise ValidationError("model.safetensors has an invalid header "
                                  "length; the file is damaged.")


class BarcodeMambaClassifierDirFmt(model.DirectoryFormat):
    config = model.File("config.json", format=JSONFormat)
    tokenizer = model.File("tokenizer.json", format=JSONFormat)
    labels = model.File("labels.json", format=JSONFormat)
    weights = model.File("model.safetensors", format=SafetensorsFormat)

    def _validate_(self, level):
        try:
            if level == "min":
                read_config(str(self.path))
            else:
                load_classifier(str(self.path))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class BarcodeMambaBackboneDirFmt(model.DirectoryFormat):
    """Pretrained backbone: config.json, tokenizer.json, backbone.safetensors."""
    config = model.File("config.json", format=JSONFormat)
    tokenizer = model.File("tokenizer.json", format=JSONFormat)
    weights = model.File("backbone.safetensors", format=SafetensorsFormat)

    def _validate_(self, level):
        try:
            load_backbone(str(self.path))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
