"""A1111 prompts: the emphasis parser, 75-token chunks with embedding slots, and the splice into CLIP."""

from __future__ import annotations

import copy

import pytest
import torch

from services.common.models import resolve_model
from services.common.models.loading import load_stable_diffusion
from services.common.prompts import CHUNK_TOKENS, PromptTokenizer, TextConditioner, parse_emphasis

NAME = "subj3ct"
R, S = 1.1, 1 / 1.1


@pytest.fixture(scope="module")
def components(tiny_models):
    return load_stable_diffusion(resolve_model(str(tiny_models["sd"])))


# (prompt, expected pieces): A1111's own doctests first, then nesting, escapes, BREAK and odd input.
EMPHASIS_TABLE = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", R), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", R)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", R)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.3 * R * R),
            (" ", R),
            ("on", 1.0),
            (" a ", R),
            ("hill", 0.55),
            (", sun, ", R),
            ("sky", R**4),
            (".", R),
        ],
    ),
    ("((word))", [("word", R * R)]),
    ("[word]", [("word", S)]),
    ("[[word]]", [("word", S * S)]),
    ("([mixed])", [("mixed", 1.0)]),
    ("(word:1.3)", [("word", 1.3)]),
    ("(word: 0.5 )", [("word", 0.5)]),
    ("((nested:1.5) outer)", [("nested", 1.5 * R), (" outer", R)]),
    ("(subj3ct:0.8), smiling", [("subj3ct", 0.8), (", smiling", 1.0)]),
    ("a \\(b\\) c", [("a (b) c", 1.0)]),
    ("back\\\\slash", [("back\\slash", 1.0)]),
    ("lone\\ backslash", [("lone backslash", 1.0)]),
    ("stray) and ]", [("stray) and ]", 1.0)]),
    ("a:b", [("a:b", 1.0)]),
    ("(a:not a number)", [("a:not a number", R)]),
    ("(a:1.2.3)", [("a:1.2.3)", R)]),
    ("one BREAK two", [("one", 1.0), ("BREAK", -1.0), ("two", 1.0)]),
    ("(one BREAK two)", [("one", R), ("BREAK", -1.0 * R), ("two", R)]),
    ("BREAKfast", [("BREAKfast", 1.0)]),
    ("one break two", [("one break two", 1.0)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize(("prompt", "expected"), EMPHASIS_TABLE)
def test_emphasis_parses_as_a1111(prompt, expected):
    parsed = parse_emphasis(prompt)
    assert [text for text, _ in parsed] == [text for text, _ in expected]
    assert [weight for _, weight in parsed] == pytest.approx([weight for _, weight in expected])


def test_plain_prompts_give_the_tokenizers_own_padded_ids(components):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 3})
    prompts = ["a photo of a woman, smiling", "a red circle"]
    batch = tokenizer.batch(prompts)
    expected = components.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert batch.ids.shape == (2, 1, 77) and torch.equal(batch.ids[:, 0], expected)
    assert batch.weights is None and (batch.slots == -1).all()


def test_the_trigger_becomes_one_slot_per_vector_with_its_weight(components):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 3})
    tokens = tokenizer(f"a photo of ({NAME}:0.8), a (woman:1.2)")
    plain = components.tokenizer("a photo of", add_special_tokens=False)["input_ids"]
    start = 1 + len(plain)  # after the start token
    assert tokens.slots[0][start : start + 3] == (0, 1, 2) and tokens.slot_count == 3
    assert tokens.weights[0][start : start + 3] == pytest.approx((0.8, 0.8, 0.8))
    woman = components.tokenizer.convert_tokens_to_ids("woman</w>")
    assert tokens.weights[0][tokens.ids[0].index(woman)] == pytest.approx(1.2)
    assert tokens.used == (NAME,)
    assert tokenizer("a red circle").used == ()


def test_several_embeddings_take_consecutive_rows_and_the_longest_trigger_wins(components):
    tokenizer = PromptTokenizer(components.tokenizer, {"red": 2, "red circle": 3, "blue": 1})
    assert tokenizer.total_vectors == 6
    tokens = tokenizer("blue, red circle and red")
    slots = [s for s in tokens.slots[0] if s >= 0]
    assert slots == [5, 2, 3, 4, 0, 1]  # blue (row 5), then "red circle" (rows 2-4) over "red", then red (rows 0-1)
    assert tokens.used == ("blue", "red circle", "red")
    with pytest.raises(ValueError, match="tokenize the same way"):
        PromptTokenizer(components.tokenizer, {"red": 1, "RED": 1})


def test_long_prompts_split_into_chunks_and_never_split_the_embedding(components):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 4})
    word = components.tokenizer.convert_tokens_to_ids("red</w>")
    tokens = tokenizer("red " * (CHUNK_TOKENS - 2) + NAME + " red")  # 73 words, then 4 slots do not fit: next chunk
    assert tokens.chunks == 2 and tokens.token_count == CHUNK_TOKENS + 5
    assert tokens.slots[0].count(-1) == 77 and tokens.slots[1][1:5] == (0, 1, 2, 3)
    assert tokens.ids[0][1 : CHUNK_TOKENS - 1] == (word,) * (CHUNK_TOKENS - 2)
    end = components.tokenizer.eos_token_id
    assert tokens.ids[0][CHUNK_TOKENS - 1 :] == (end, end, end)  # padded to 75, then the end token
    # A comma within 20 tokens of a full chunk: the words after it move to the next chunk.
    comma = tokenizer("red " * 70 + ", " + "blue " * 10)
    assert comma.chunks == 2
    first = comma.ids[0]
    assert first[71] == components.tokenizer.convert_tokens_to_ids(",</w>") and set(first[72:]) == {end}
    # A comma further back than 20 tokens: the chunk is cut at 75 tokens exactly.
    far = tokenizer("red " * 10 + ", " + "blue " * 70)
    assert far.chunks == 2 and far.ids[0][CHUNK_TOKENS] != end
    batch = tokenizer.batch(["a short one", "red " * 80])
    assert batch.ids.shape == (2, 2, 77)  # the short prompt is padded with an empty chunk


def test_break_starts_a_new_chunk(components):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 1})
    tokens = tokenizer("a red circle BREAK a blue square")
    assert tokens.chunks == 2
    second = tuple(components.tokenizer("a blue square", add_special_tokens=False)["input_ids"])
    assert tokens.ids[1][1 : 1 + len(second)] == second
    literal = PromptTokenizer(components.tokenizer, {NAME: 1}, emphasis="none")("a (red:1.5) circle BREAK a")
    assert literal.chunks == 1 and all(w == 1.0 for w in literal.weights[0])


def test_sd2_pads_after_the_end_token_with_its_pad_token(components):
    sd2_tokenizer = copy.deepcopy(components.tokenizer)
    sd2_tokenizer.pad_token = "!"
    tokens = PromptTokenizer(sd2_tokenizer, {NAME: 1})("a red circle")
    expected = sd2_tokenizer("a red circle", padding="max_length", max_length=77).input_ids
    assert list(tokens.ids[0]) == expected


def test_the_splice_with_no_slots_is_exactly_clip(components):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 2})
    batch = tokenizer.batch(["a photo of a woman", "red " * 100])  # two chunks each
    z = TextConditioner(components.text_encoder)(batch, torch.zeros(2, 32))
    ids = batch.ids.reshape(4, 77)
    expected = components.text_encoder(ids).last_hidden_state.reshape(2, 154, -1)
    assert z.shape == (2, 154, 32) and torch.equal(z, expected)


@pytest.fixture(scope="module")
def biased_encoder(components):
    """The tiny text encoder with a final layer-norm bias, so its outputs have a mean to keep (as real CLIP's do)."""
    encoder = copy.deepcopy(components.text_encoder)
    with torch.no_grad():
        encoder.final_layer_norm.bias.fill_(0.5)
    return encoder


def test_original_emphasis_scales_outputs_and_keeps_the_mean(components, biased_encoder):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 1})
    conditioner = TextConditioner(biased_encoder)
    weighted = tokenizer.batch(["a (red:1.5) circle"])
    plain = tokenizer.batch(["a red circle"])
    z_weighted, z_plain = conditioner(weighted, torch.zeros(1, 32)), conditioner(plain, torch.zeros(1, 32))
    torch.testing.assert_close(z_weighted.mean(), z_plain.mean())
    ids = weighted.ids[0, 0].tolist()
    red, circle = (ids.index(components.tokenizer.convert_tokens_to_ids(t)) for t in ("red</w>", "circle</w>"))
    rescale = z_weighted[0, circle] / z_plain[0, circle]  # every token is rescaled by the same factor ...
    assert torch.allclose(rescale, rescale[0].expand_as(rescale), rtol=1e-4)
    assert rescale[0] < 1.0  # ... below 1, since the weight raised the mean
    ratio = z_weighted[0, red] / z_plain[0, red]  # ... and the weighted one also by its weight
    torch.testing.assert_close(ratio, 1.5 * rescale, rtol=1e-4, atol=1e-5)


def test_original_emphasis_leaves_a_zero_mean_alone_instead_of_dividing_by_it(components):
    """A freshly initialised encoder (no layer-norm bias) outputs a mean of ~0: A1111's 0/0 would give NaN."""
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 1})
    prompt = tokenizer.batch(["f4 cross4 ( hatm person4 ( (m theirm4 ( person4 ( crossm4 (4"])
    original = TextConditioner(components.text_encoder)(prompt, torch.zeros(1, 32))
    no_norm = TextConditioner(components.text_encoder, emphasis="no_norm")(prompt, torch.zeros(1, 32))
    assert torch.isfinite(original).all()
    torch.testing.assert_close(original, no_norm)


def test_no_norm_emphasis_only_scales(components):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 1})
    conditioner = TextConditioner(components.text_encoder, emphasis="no_norm")
    weighted, plain = tokenizer.batch(["a (red:1.5) circle"]), tokenizer.batch(["a red circle"])
    z_weighted, z_plain = conditioner(weighted, torch.zeros(1, 32)), conditioner(plain, torch.zeros(1, 32))
    ids = weighted.ids[0, 0].tolist()
    red, circle = (ids.index(components.tokenizer.convert_tokens_to_ids(t)) for t in ("red</w>", "circle</w>"))
    torch.testing.assert_close(z_weighted[0, red], 1.5 * z_plain[0, red])
    torch.testing.assert_close(z_weighted[0, circle], z_plain[0, circle])
    with pytest.raises(ValueError, match="emphasis"):
        TextConditioner(components.text_encoder, emphasis="loud")


def test_each_embedding_fills_its_own_slots(components):
    tokenizer = PromptTokenizer(components.tokenizer, {NAME: 2, "style2": 1})
    conditioner = TextConditioner(components.text_encoder)
    vectors = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    alone = conditioner(tokenizer.batch([f"a photo of {NAME}"]), vectors)
    swapped = vectors.clone()
    swapped[2] += 1.0  # only style2's row changes
    assert torch.equal(conditioner(tokenizer.batch([f"a photo of {NAME}"]), swapped), alone)
    assert not torch.equal(conditioner(tokenizer.batch([f"a photo of {NAME}, style2"]), swapped), alone)
