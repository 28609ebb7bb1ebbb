"""CLIP's byte-level BPE tokenizer, as MineCLIP's text encoder expects its input.

Text is cleaned the CLIP way (ftfy, HTML unescaping twice, whitespace collapsed, lower-cased), split
into words, digits and punctuation runs, and each piece is BPE-encoded over its UTF-8 bytes. A
sequence is ``<|startoftext|> ... <|endoftext|>`` padded with zeros to ``context_length``; longer
texts are cut so that ``<|endoftext|>`` stays the last token (the text encoder pools at the
highest id, which is that token).

The vocabulary is OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (MIT licence). It is read from the
``openai-clip`` distribution (``clip/bpe_simple_vocab_16e6.txt.gz``), a pinned dependency that
needs neither torch nor torchvision; its ``clip`` package is never imported (it would import
torchvision), only the data file is located. Nothing is fetched at run time.
"""

from __future__ import annotations

import gzip
import html
import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import ftfy
import regex
import torch

__all__ = [
    "CONTEXT_LENGTH",
    "EOT_TOKEN",
    "SOT_TOKEN",
    "VOCAB_SIZE",
    "ClipTokenizer",
    "default_tokenizer",
    "tokenize",
    "vocabulary_path",
]

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_DISTRIBUTION = "openai-clip"
CONTEXT_LENGTH = 77
# 256 byte symbols, the same 256 as word ends, 48,894 merges, 2 specials.
N_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 2 * 256 + N_MERGES + 2
SOT_TEXT = "<|startoftext|>"
EOT_TEXT = "<|endoftext|>"
SOT_TOKEN = VOCAB_SIZE - 2  # 49406
EOT_TOKEN = VOCAB_SIZE - 1  # 49407
WORD_END = "</w>"

# CLIP's pre-tokenizer: the special tokens, English contractions, letter runs, single digits, and
# runs of anything else that is neither space, letter nor digit.
_PIECES = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def vocabulary_path() -> Path:
    """Where the installed ``openai-clip`` distribution keeps the BPE vocabulary."""
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(VOCAB_DISTRIBUTION)
        candidates.append(Path(str(dist.locate_file(f"clip/{VOCAB_FILE}"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("clip")  # locates the package without running its __init__
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(loc) / VOCAB_FILE for loc in spec.submodule_search_locations)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"CLIP BPE vocabulary {VOCAB_FILE} not found; it ships in the '{VOCAB_DISTRIBUTION}' "
        f"distribution (pip install {VOCAB_DISTRIBUTION}==1.0.1, a dependency of goalcraft)"
    )


@lru_cache(maxsize=1)
def _byte_symbols() -> tuple[str, ...]:
    """The printable stand-in for each byte value 0..255, indexed by byte.

    Bytes that are printable, non-space Latin-1 characters stand for themselves; the others are
    given the code points 256, 257, ... in increasing byte order, so every byte has a visible symbol
    and BPE never sees whitespace or control characters.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return tuple(symbols[b] for b in range(256))


def _base_alphabet() -> list[str]:
    # Vocabulary order of the 256 byte symbols: the self-standing printable bytes first (in byte
    # order), then the remapped ones (in byte order, which is also their code point order).
    symbols = _byte_symbols()
    own = [s for b, s in enumerate(symbols) if ord(s) == b]
    remapped = [s for b, s in enumerate(symbols) if ord(s) != b]
    return own + remapped


def clean_text(text: str) -> str:
    """CLIP's text cleanup: ftfy, HTML entities (twice), collapsed whitespace, lower case."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _SPACES.sub(" ", text).strip().lower()


class ClipTokenizer:
    """Byte-level BPE over CLIP's 49,408-token vocabulary."""

    def __init__(self, vocab_path: str | os.PathLike[str] | None = None):
        path = Path(vocab_path) if vocab_path is not None else vocabulary_path()
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        # Line 0 is a version header; the next N_MERGES lines are merges, most frequent first.
        merges = [tuple(line.split()) for line in lines[1 : 1 + N_MERGES]]
        if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(f"{path}: expected {N_MERGES} merge lines of two symbols each")
        alphabet = _base_alphabet()
        tokens = alphabet + [s + WORD_END for s in alphabet] + ["".join(m) for m in merges] + [SOT_TEXT, EOT_TEXT]
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(tokens)}
        if len(self.encoder) != VOCAB_SIZE:
            raise ValueError(f"{path}: vocabulary has {len(self.encoder)} distinct tokens, expected {VOCAB_SIZE}")
        self.decoder: dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        self.merge_rank: dict[tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self._byte_symbol = _byte_symbols()
        self._symbol_byte = {s: b for b, s in enumerate(self._byte_symbol)}
        self._cache: dict[str, tuple[str, ...]] = {SOT_TEXT: (SOT_TEXT,), EOT_TEXT: (EOT_TEXT,)}

    @property
    def sot_token(self) -> int:
        return self.encoder[SOT_TEXT]

    @property
    def eot_token(self) -> int:
        return self.encoder[EOT_TEXT]

    def bpe(self, piece: str) -> tuple[str, ...]:
        """Split one pre-tokenized piece (already in byte symbols) into vocabulary tokens."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        parts = list(piece[:-1]) + [piece[-1] + WORD_END]
        while len(parts) > 1:
            # Apply the highest-priority merge present anywhere in the word, at every place it occurs.
            best_rank, left, right = min(
                (self.merge_rank.get(pair, N_MERGES), *pair) for pair in zip(parts, parts[1:])
            )
            if best_rank == N_MERGES:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == left and parts[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        result = tuple(parts)
        self._cache[piece] = result
        return result

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without the start/end tokens."""
        ids: list[int] = []
        for piece in _PIECES.findall(clean_text(text)):
            symbols = "".join(self._byte_symbol[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[tok] for tok in self.bpe(symbols))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (start/end/padding tokens dropped); for inspection, not an exact inverse."""
        skip = {0, self.sot_token, self.eot_token}
        data = bytearray()
        for i in ids:
            if int(i) in skip:
                continue
            token = self.decoder[int(i)]
            word_end = token.endswith(WORD_END)
            data.extend(self._symbol_byte[ch] for ch in (token[: -len(WORD_END)] if word_end else token))
            if word_end:
                data.extend(b" ")
        return data.decode("utf-8", errors="replace").strip()

    def __call__(self, texts: Sequence[str] | str, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError("context_length must leave room for the start and end tokens")
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__}")
            ids = [self.sot_token, *self.encode(text)[: context_length - 2], self.eot_token]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


@lru_cache(maxsize=1)
def default_tokenizer() -> ClipTokenizer:
    """The tokenizer over the installed vocabulary, built once per process."""
    return ClipTokenizer()


def tokenize(texts: Sequence[str] | str, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """``LongTensor[B, context_length]`` of CLIP token ids for ``texts`` (a string counts as a batch of one)."""
    return default_tokenizer()(texts, context_length)
