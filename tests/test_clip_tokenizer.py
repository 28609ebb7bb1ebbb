"""CLIP byte-level BPE tokenizer.

Expected ids are derived here from the vocabulary file itself: the first 256 ids are the byte
symbols, the next 256 the same symbols ending a word (``</w>``), then one id per merge line in file
order, then ``<|startoftext|>`` and ``<|endoftext|>``.
"""

from __future__ import annotations

import gzip
from functools import lru_cache

import pytest
import torch

from goalcraft.models.clip_tokenizer import (
    EOT_TOKEN,
    SOT_TOKEN,
    ClipTokenizer,
    default_tokenizer,
    tokenize,
    vocabulary_path,
)


@lru_cache(maxsize=1)
def merge_lines() -> list[str]:
    with gzip.open(vocabulary_path(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    assert "#version" in lines[0]  # a header line, then the merges
    return lines[1 : 1 + 49152 - 256 - 2]


def byte_index(ch: str) -> int:
    """Position of an ASCII letter among the 256 byte symbols: the bytes that stand for themselves
    ('!'..'~', then two Latin-1 ranges) come first, in byte order."""
    assert "!" <= ch <= "~"
    return ord(ch) - ord("!")


def word_id(word: str) -> int:
    """Id of a whole word that has its own merge line (merge index i -> id 512 + i)."""
    target = word + "</w>"
    matches = [i for i, line in enumerate(merge_lines()) if line.replace(" ", "") == target]
    assert matches, f"{word!r} has no merge of its own in the vocabulary"
    return 512 + matches[0]


def test_vocabulary_comes_from_the_openai_clip_distribution():
    path = vocabulary_path()
    assert path.name == "bpe_simple_vocab_16e6.txt.gz" and path.parent.name == "clip"
    assert len(merge_lines()) == 48894
    tok = default_tokenizer()
    assert len(tok.encoder) == 49408
    assert tok.encoder["<|startoftext|>"] == SOT_TOKEN == 49406
    assert tok.encoder["<|endoftext|>"] == EOT_TOKEN == 49407


def test_known_ids_from_the_vocabulary_file():
    row = tokenize("a diamond")[0]
    a_end = 256 + byte_index("a")  # single letter word: byte symbol + </w>
    assert a_end == 320
    assert row[:4].tolist() == [49406, a_end, word_id("diamond"), 49407]
    assert row[4:].eq(0).all()
    assert tokenize("the")[0, 1].item() == word_id("the")
    # A merge line "x y" is the token "xy" at id 512 + its line index; the tokenizer agrees.
    tok = default_tokenizer()
    for i in (0, 1, 1000, 48893):
        assert tok.encoder[merge_lines()[i].replace(" ", "")] == 512 + i


def test_output_shape_dtype_and_batching():
    out = tokenize(["mine a diamond", "chop a tree", ""])
    assert out.dtype == torch.long and out.shape == (3, 77)
    assert out[2, :3].tolist() == [SOT_TOKEN, EOT_TOKEN, 0]
    assert torch.equal(tokenize("chop a tree"), out[1:2])
    assert tokenize("chop a tree", context_length=10).shape == (1, 10)


def test_cleaning_case_whitespace_html_and_quotes():
    base = tokenize("chop a tree")
    assert torch.equal(tokenize("  CHOP\n\t a   Tree  "), base)
    assert torch.equal(tokenize("fish &amp; chips"), tokenize("fish & chips"))
    assert torch.equal(tokenize("it’s"), tokenize("it's"))  # ftfy straightens curly quotes


def test_words_punctuation_digits_and_contractions_split_like_clip():
    tok = default_tokenizer()
    assert tok.encode("it's") == [word_id("it"), tok.encoder["'s</w>"]]
    assert tok.encode("tree!") == [word_id("tree"), 256 + byte_index("!")]
    # digits are single tokens each
    assert tok.encode("64") == [256 + byte_index("6"), 256 + byte_index("4")]


def test_rare_words_split_into_vocabulary_pieces_and_decode_back():
    tok = default_tokenizer()
    for text in ["zzqxj", "crafting table", "über 日本 😀"]:
        ids = tok.encode(text)
        assert all(0 <= i < SOT_TOKEN for i in ids)
        assert tok.decode(ids) == text
    pieces = [tok.decoder[i] for i in tok.encode("zzqxj")]
    assert len(pieces) > 1 and "".join(pieces) == "zzqxj</w>"


def test_truncation_keeps_end_of_text_last():
    row = tokenize(" ".join(["diamond"] * 200))[0]
    assert row[0] == SOT_TOKEN and row[-1] == EOT_TOKEN
    assert row[1:-1].eq(word_id("diamond")).all()
    short = tokenize(" ".join(["diamond"] * 200), context_length=5)[0]
    assert short.tolist() == [SOT_TOKEN, word_id("diamond"), word_id("diamond"), word_id("diamond"), EOT_TOKEN]


def test_end_of_text_is_the_highest_id_in_every_row():
    # The text encoder pools at argmax(tokens): that must be the end-of-text position.
    out = tokenize(["a", "mine iron ore with a stone pickaxe", " ".join(["zombie"] * 100)])
    eot_positions = (out == EOT_TOKEN).int().argmax(dim=1)
    assert torch.equal(out.argmax(dim=1), eot_positions)


def test_bad_inputs():
    with pytest.raises(TypeError):
        tokenize(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        tokenize("x", context_length=1)
    with pytest.raises(FileNotFoundError):
        ClipTokenizer("/nonexistent/bpe.txt.gz")
