"""CLIP's byte-level BPE tokenizer (lower-cased, 49408 tokens), OpenAI-compatible ids.

Text is cleaned (ftfy, HTML entities unescaped twice, whitespace collapsed), lower-cased,
split by CLIP's pre-tokenisation pattern, mapped byte-wise to printable characters and
merged by the 48,894 BPE rules of ``bpe_simple_vocab_16e6.txt.gz``.
"""
from __future__ import annotations

import functools
import gzip
import html
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import ftfy
import regex
import torch

VOCAB_FILE = Path(__file__).with_name('bpe_simple_vocab_16e6.txt.gz')
START_OF_TEXT = '<|startoftext|>'
END_OF_TEXT = '<|endoftext|>'
NUM_MERGES = 49152 - 256 - 2  # the merge rules CLIP was trained with
END_OF_WORD = '</w>'

_PRETOKENIZE = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)


@functools.lru_cache(maxsize=1)
def byte_to_char() -> Dict[int, str]:
    """Bijection from the 256 byte values to printable unicode characters.

    Printable latin-1 bytes map to themselves; the others are shifted above 255 so
    that no BPE symbol is whitespace or a control character.
    """
    printable = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1))
                 + list(range(ord('®'), ord('ÿ') + 1)))
    mapping = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in mapping)
    for offset, b in enumerate(shifted):
        mapping[b] = chr(256 + offset)
    return mapping


def clean_text(text: str) -> str:
    """ftfy repair, HTML unescaping (twice, as CLIP), whitespace collapse, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r'\s+', ' ', text).strip().lower()


class SimpleTokenizer:
    """Encodes text to CLIP token ids and back."""

    def __init__(self, vocab_file: Union[str, Path] = VOCAB_FILE):
        with gzip.open(vocab_file, 'rt', encoding='utf-8') as f:
            lines = f.read().split('\n')
        merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
        self.byte_encoder = byte_to_char()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        # Vocabulary order: bytes, bytes ending a word, one entry per merge, special tokens.
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + END_OF_WORD for s in symbols]
        vocab += [a + b for a, b in merges] + [START_OF_TEXT, END_OF_TEXT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self.sot_token = self.encoder[START_OF_TEXT]
        self.eot_token = self.encoder[END_OF_TEXT]
        self._word_cache: Dict[str, Tuple[str, ...]] = {
            START_OF_TEXT: (START_OF_TEXT,), END_OF_TEXT: (END_OF_TEXT,)}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def bpe(self, word: str) -> Tuple[str, ...]:
        """Split one pre-token (already byte-mapped) into BPE symbols."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        parts = list(word[:-1]) + [word[-1] + END_OF_WORD]
        while len(parts) > 1:
            ranked = [(self.merge_rank.get(pair, NUM_MERGES), pair)
                      for pair in zip(parts, parts[1:])]
            rank, (first, second) = min(ranked)
            if rank == NUM_MERGES:
                break
            merged: List[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        result = tuple(parts)
        self._word_cache[word] = result
        return result

    def encode(self, text: str) -> List[int]:
        """Token ids of ``text`` without the start/end markers."""
        ids: List[int] = []
        for piece in _PRETOKENIZE.findall(clean_text(text)):
            mapped = ''.join(self.byte_encoder[b] for b in piece.encode('utf-8'))
            ids.extend(self.encoder[symbol] for symbol in self.bpe(mapped))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids; markers are kept and word ends become spaces."""
        chars = ''.join(self.decoder[int(i)] for i in ids)
        data = bytes(self.byte_decoder[c] for c in chars)
        return data.decode('utf-8', errors='replace').replace(END_OF_WORD, ' ')


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> SimpleTokenizer:
    return SimpleTokenizer()


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77,
             truncate: bool = False) -> torch.LongTensor:
    """Token ids (len(texts), context_length), zero-padded, with start/end markers.

    Same contract as OpenAI's ``clip.tokenize``: a text longer than ``context_length``
    raises unless ``truncate`` is set, which keeps the first tokens and ends on the
    end-of-text marker.
    """
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = default_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [tokenizer.sot_token] + tokenizer.encode(text) + [tokenizer.eot_token]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(
                    f'text {text[:60]!r}... has {len(ids)} tokens, more than the context '
                    f'length {context_length}; shorten it or pass truncate=True')
            ids = ids[:context_length - 1] + [tokenizer.eot_token]
        result[row, :len(ids)] = torch.tensor(ids)
    return result
