"""Bark's tokenizer: the shipped mBERT vocabulary, known ids, and agreement with transformers."""

import hashlib
from importlib import resources

import numpy as np
import pytest

from bark_model.constants import TEXT_ENCODING_OFFSET, TEXT_PAD_TOKEN
from bark_model.names import BUNDLED_VOCAB
from bark_model.tokenizer import BarkTokenizer

# bert-base-multilingual-cased vocab.txt (119 547 lines), as documented in shared/bark-facts.md §16.
VOCAB_SHA256 = "fe0fda7c425b48c516fc8f160d594c8022a0808447475c1a7c6d6479763f310c"
SAMPLES = [
    "Hello, my name is Suno. [laughs] ♪ la la ♪ — uh...",
    "Guten Tag! Wie GEHT es Ihnen?",
    "C'est l'été, à Montréal.",
    "你好，世界。今天天气很好！",
    "こんにちは、世界。カタカナとひらがな。",
    "Привет, как дела?",
]


@pytest.fixture(scope="module")
def vocab_path():
    with resources.as_file(resources.files("bark_model.assets").joinpath(BUNDLED_VOCAB)) as path:
        yield path


def test_shipped_vocabulary_is_mbert_cased(vocab_path):
    assert hashlib.sha256(vocab_path.read_bytes()).hexdigest() == VOCAB_SHA256


def test_known_ids(vocab_path):
    tok = BarkTokenizer.from_file(vocab_path)
    assert tok.token_ids("[laughs]") == [164, 27207, 15774, 10107, 166]
    assert tok.token_ids("Hello") == [31178]
    assert tok.token_ids("♪ — –") == [1873, 100, 100]  # both dashes are [UNK] in mBERT


def test_encode_offsets_pads_and_reports_truncation(vocab_path):
    tok = BarkTokenizer.from_file(vocab_path)
    short = tok.encode("  Hello \n\t world ")
    assert short.n_tokens == 2 and short.n_dropped == 0
    assert list(short.ids[:2]) == [31178 + TEXT_ENCODING_OFFSET, tok.token_ids("world")[0] + TEXT_ENCODING_OFFSET]
    assert np.all(short.ids[2:] == TEXT_PAD_TOKEN) and len(short.ids) == 256
    long = tok.encode("word " * 300)
    assert long.n_tokens == 256 and long.n_dropped == 44
    with pytest.raises(ValueError, match="empty"):
        tok.encode(" \n ")


def test_matches_transformers_bert_tokenizer(vocab_path):
    transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency")
    reference = transformers.BertTokenizer(str(vocab_path), do_lower_case=False)
    tok = BarkTokenizer.from_file(vocab_path)
    for text in SAMPLES:
        assert tok.token_ids(text) == reference.encode(text, add_special_tokens=False), text


BROKEN = {
    "vocab.txt": b"",
    "garbage/vocab.txt": bytes(range(256)) * 8,
    "nounk/vocab.txt": b"[CLS]\n[SEP]\nhello\n",
    "tokenizer.json": b'{"model": ',
    "empty_object/tokenizer.json": b"{}",
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_an_unusable_vocabulary_is_one_value_error_naming_the_file(name, tmp_path):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BROKEN[name])
    with pytest.raises(ValueError, match=f"tokenizer file {path} (is empty|cannot be used)") as err:
        BarkTokenizer.from_file(path)
    assert "\n" not in str(err.value) and "download the weights again" in str(err.value)
