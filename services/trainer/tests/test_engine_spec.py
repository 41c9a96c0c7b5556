"""The spec (every knob, validated, round-tripped as JSON), trigger-name checks and A1111's init from text."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from services.common.errors import InvalidArgument
from services.trainer.engine import (
    TrainingSpec,
    create_embedding,
    load_components,
    scale_learning_rate,
    suggest_name,
    validate_name,
)
from services.trainer.templates import BUILTIN_TEMPLATES


def _spec(**changes) -> TrainingSpec:
    return TrainingSpec(model="models/tiny-sd", embedding_key="e.safetensors", dataset="ds/", **changes)


def test_defaults_are_a1111s_and_the_record_round_trips_through_json():
    spec = _spec(extra_formats=("a1111_pt", "diffusers"), min_snr_gamma=5.0, noise_offset=0.05)
    assert (spec.learning_rate, spec.lr_scheduler, spec.weight_decay) == ("0.005", "a1111", 0.0)
    assert (spec.latent_sampling, spec.flip, spec.template) == ("once", False, "style_filewords")
    assert spec.template_text == "\n".join(BUILTIN_TEMPLATES["style_filewords"])  # resolved: nothing left unset
    record = json.loads(json.dumps(spec.to_record()))
    assert set(record) == {f.name for f in dataclasses.fields(TrainingSpec)}
    assert TrainingSpec.from_record(record) == spec


def test_custom_template_keeps_the_users_lines():
    spec = _spec(template="custom", template_text="a photo of [name], [filewords]\n\n")
    assert spec.template_text == "a photo of [name], [filewords]"
    assert spec.prompt_template.lines == ("a photo of [name], [filewords]",)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_steps": 0}, "spec.max_steps"),
        ({"batch_size": 0}, "spec.batch_size"),
        ({"width": 100}, "spec.width"),
        ({"latent_sampling": "sometimes"}, "spec.latent_sampling"),
        ({"gradient_clipping": "both"}, "spec.gradient_clipping"),
        ({"learning_rate": "0.05:10, oops"}, "spec.learning_rate"),
        ({"gradient_clipping": "norm", "gradient_clip": "x"}, "spec.gradient_clip"),
        ({"lr_scheduler": "cosine", "learning_rate": "0.05:10, 0.01"}, "spec.learning_rate"),
        ({"tag_dropout": 1.5}, "spec.tag_dropout"),
        ({"min_snr_gamma": -1.0}, "spec.min_snr_gamma"),
        ({"extra_formats": ("png",)}, "spec.extra_formats"),
        ({"precision": "int8"}, "spec.precision"),
        ({"template": "style", "template_text": "my own [name]"}, "spec.template_text"),
        ({"template": "custom", "template_text": "no placeholder here"}, "spec.template_text"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes, field):
    with pytest.raises(InvalidArgument) as raised:
        _spec(**changes)
    assert raised.value.field == field


def test_unknown_record_keys_are_refused():
    record = _spec().to_record() | {"learnign_rate": "0.1"}
    with pytest.raises(InvalidArgument, match="learnign_rate"):
        TrainingSpec.from_record(record)


def test_scale_learning_rate_halves_every_piece():
    spec = _spec(learning_rate="0.05:10, 0.02:20, 0.005")
    assert scale_learning_rate(spec, 0.5).learning_rate == "0.025:10, 0.01:20, 0.0025"


def test_a_name_that_is_a_token_is_refused_with_a_suggestion(components):
    with pytest.raises(InvalidArgument) as raised:
        validate_name("woman", components.tokenizer)
    assert raised.value.reason == "NAME_IS_A_TOKEN" and raised.value.field == "name"
    suggestion = raised.value.metadata["suggestion"]
    assert suggestion in raised.value.message
    validate_name(suggestion, components.tokenizer)  # the suggestion itself passes
    assert suggest_name("Woman", components.tokenizer) != "Woman"
    validate_name("subj3ct", components.tokenizer)


@pytest.mark.parametrize("name", ["", "   ", "two words", "a/b", "[name]", "x" * 65, "---"])
def test_invalid_names_are_refused(components, name):
    with pytest.raises(InvalidArgument) as raised:
        validate_name(name, components.tokenizer)
    assert raised.value.reason == "INVALID_NAME"


def test_init_text_of_several_tokens_spreads_as_a1111(components):
    """vector i takes init token floor(i * T / n): T = 3 tokens over n = 5 vectors -> 0, 0, 1, 1, 2."""
    tokenizer, table = components.tokenizer, components.text_encoder.get_input_embeddings().weight
    ids = tokenizer("red circle blue", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3
    embedding = create_embedding(components, "subj3ct", "red circle blue", 5, model_name="tiny-sd")
    expected = table[[ids[0], ids[0], ids[1], ids[1], ids[2]]]
    assert torch.equal(embedding.vectors[0], expected)
    assert embedding.step == 0
    assert embedding.metadata["init_text"] == "red circle blue"
    assert embedding.metadata["base_model_sha256"] == components.fingerprint.sha256
    assert embedding.metadata["sd_checkpoint_name"] == "tiny-sd"
    # More tokens than vectors: 2 vectors from 3 tokens take tokens 0 and 1.
    two = create_embedding(components, "subj3ct", "red circle blue", 2)
    assert torch.equal(two.vectors[0], table[[ids[0], ids[1]]])
    assert not create_embedding(components, "subj3ct", "", 3).vectors[0].any()  # A1111: empty init text -> zeros


def test_vector_count_is_checked(components):
    with pytest.raises(InvalidArgument, match="vectors"):
        create_embedding(components, "subj3ct", "woman", 76)


def test_load_components_resolves_the_specs_model(tiny_models):
    components = load_components(TrainingSpec(model=str(tiny_models["sd"]), embedding_key="", dataset="ds/"))
    assert (components.family, components.prediction_type, components.unet.dtype) == ("sd1", "epsilon", torch.float32)
