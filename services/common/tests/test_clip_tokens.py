"""The CLIP token counter: built from the vendored BPE, it must give SD's tokenizer ids and counts exactly."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from services.common.text import CONTEXT_TOKENS, ClipTokenCounter, prompt_tokens
from services.common.text.clip_tokens import clip_vocab_and_merges


@pytest.fixture(scope="module")
def counter() -> ClipTokenCounter:
    return ClipTokenCounter.default()


def test_vocabulary_has_clips_size_and_ids():
    vocab, merges = clip_vocab_and_merges()
    assert len(vocab) == 49408 and len(set(vocab.values())) == 49408
    assert len(merges) == 49152 - 256 - 2
    # The standard ids of SD1.5's tokenizer/vocab.json.
    expected = {"!": 0, "a</w>": 320, "photo</w>": 1125, "of</w>": 539, "cat</w>": 2368, ",</w>": 267}
    expected |= {"woman</w>": 2308, "<|startoftext|>": 49406, "<|endoftext|>": 49407}
    assert {token: vocab[token] for token in expected} == expected


def test_default_counter_is_built_once_and_has_the_full_vocabulary(counter):
    assert ClipTokenCounter.default() is counter
    assert counter.vocab_size == 49408
    assert counter.ids("a photo of a cat") == [320, 1125, 539, 320, 2368]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("a photo of a cat", 5),
        ("", 0),
        ("A PHOTO   of a Cat", 5),  # lower-cased, whitespace collapsed
        ("a woman, sitting on a bench.", 8),  # punctuation is its own token
        ("cat!!", 2),  # a run of punctuation is one word
        ("subj3ct", 4),  # digits split from letters: sub j 3 ct
    ],
)
def test_counts(counter, text, tokens):
    assert counter.count(text) == tokens


def test_long_word_splits_into_several_pieces(counter):
    ids = counter.ids("antidisestablishmentarianism")
    assert len(ids) > 2
    assert counter.count("antidisestablishmentarianism") == len(ids)


def test_counts_are_not_truncated(counter):
    text = ", ".join(["a red hat"] * 40)
    assert counter.count(text) == 40 * 3 + 39 > CONTEXT_TOKENS


def test_from_tokenizer_matches_default_and_ignores_its_truncation(counter):
    vocab, merges = clip_vocab_and_merges()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    tokenizer.backend_tokenizer.enable_truncation(max_length=77)
    own = ClipTokenCounter.from_tokenizer(tokenizer)
    long_text = " ".join(["woman"] * 120)
    assert own.count(long_text) == counter.count(long_text) == 120
    # The caller's tokenizer keeps its own settings.
    assert tokenizer.backend_tokenizer.truncation is not None


def test_from_tokenizer_rejects_a_non_tokenizer():
    with pytest.raises(TypeError, match="CLIPTokenizer"):
        ClipTokenCounter.from_tokenizer(object())


def test_prompt_tokens_counts_vectors_for_each_name(counter):
    caption = "a woman sitting on a bench"  # 6 tokens
    # "a photo of" 3 + "," 1 + caption 6 + the embedding's 5 vectors.
    assert prompt_tokens("a photo of [name], [filewords]", caption, "subj3ct", 5, counter) == 15
    assert prompt_tokens("[name] and [name], [filewords]", caption, "subj3ct", 2, counter) == 2 + 1 + 2 + 1 + 6
    assert prompt_tokens("a painting, art by [name]", caption, "subj3ct", 1, counter) == 6


def test_prompt_tokens_counts_a_spelled_out_name_as_the_embedding(counter):
    # A1111 finds an embedding by its name anywhere in the prompt, so a caption holding it adds vectors.
    line = "a photo of [name], [filewords]"
    assert prompt_tokens(line, "Subj3ct sitting", "subj3ct", 4, counter) == 3 + 1 + 4 + 4 + 1
    assert prompt_tokens(line, "subj3cts sitting", "subj3ct", 4, counter) == 3 + 1 + 4 + counter.count(
        "subj3cts sitting"
    )


def test_prompt_tokens_needs_a_vector():
    with pytest.raises(ValueError, match="vectors"):
        prompt_tokens("[name]", "", "x", 0, ClipTokenCounter.default())
