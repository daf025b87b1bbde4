"""Semantic types of q2-barcodemamba."""
from qiime2.plugin import SemanticType

BarcodeMambaClassifier = SemanticType("BarcodeMambaClassifier")
BarcodeMambaBackbone = SemanticType("BarcodeMambaBackbone")
