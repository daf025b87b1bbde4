"""Byte-pair-encoding tokenizer for DNA barcodes (HF ``tokenizers``).

As in BarcodeMamba+ (arXiv 2512.15931) the vocabulary is learnt by BPE
(Sennrich et al. 2016) on unlabelled barcodes; DNA has no words, so the
whole read is one "word" and merges span any bases. The alphabet is
``ACGTN`` (ambiguity codes are mapped to ``N`` by
:func:`q2_barcodemamba.core.data.clean_sequence`). Token ids 0..3 are the
special tokens below; 0 is padding.
"""
import json
from typing import Iterable, List, Sequence

from tokenizers import Tokenizer, models, trainers

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
ALPHABET = list("ACGTN")


class DNATokenizer:
    """Thin wrapper: train, encode (with cropping), save/load as JSON."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        for i, tok in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(tok) != i:
                raise ValueError(f"tokenizer.json: special token {tok} must "
                                 f"have id {i}.")

    @classmethod
    def train(cls, sequences: Iterable[str], vocab_size: int = 1024
              ) -> "DNATokenizer":
        """Learn a BPE vocabulary of ``vocab_size`` tokens (incl. specials)."""
        if vocab_size < len(SPECIAL_TOKENS) + len(ALPHABET):
            raise ValueError(f"vocab_size must be at least "
                             f"{len(SPECIAL_TOKENS) + len(ALPHABET)}.")
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
            initial_alphabet=ALPHABET, show_progress=False,
            max_token_length=16)
        tok.train_from_iterator(sequences, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, sequences: Sequence[str], max_length: int
               ) -> List[List[int]]:
        """Token ids per sequence, cropped to the first ``max_length``.

        Reads longer than ``max_length`` tokens keep their 5' end (the
        start of ITS1 for full-ITS reads); nothing else is dropped.
        """
        encs = self._tok.encode_batch(list(sequences), add_special_tokens=False)
        return [e.ids[:max_length] for e in encs]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._tok.id_to_token(i) for i in ids
                       if i >= len(SPECIAL_TOKENS))

    def to_json(self) -> str:
        return self._tok.to_str()

    @classmethod
    def from_json(cls, text: str) -> "DNATokenizer":
        try:
            json.loads(text)
            tok = Tokenizer.from_str(text)
        except Exception as exc:  # tokenizers raises plain Exception
            raise ValueError(f"tokenizer.json is not a valid tokenizer: "
                             f"{exc}") from None
        return cls(tok)
