"""GenerationSettings validation and BatchingSettings from the environment."""

from __future__ import annotations

import math

import pytest

from services.caption.captioning import BatchingSettings, GenerationSettings
from services.common.errors import InvalidArgument


def test_defaults_are_a1111s():
    settings = GenerationSettings()
    assert (settings.num_beams, settings.min_length, settings.max_length, settings.sample) == (1, 24, 48, False)
    assert settings.validate() is settings


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_beams": 0}, "options.num_beams"),
        ({"num_beams": 17}, "options.num_beams"),
        ({"max_length": 0, "min_length": 0}, "options.max_length"),
        ({"max_length": 257}, "options.max_length"),
        ({"min_length": 30, "max_length": 20}, "options.min_length"),
        ({"min_length": -1}, "options.min_length"),
        ({"top_p": 0.0}, "options.top_p"),
        ({"top_p": 1.5}, "options.top_p"),
        ({"top_p": math.nan}, "options.top_p"),
        ({"repetition_penalty": 0.0}, "options.repetition_penalty"),
        ({"repetition_penalty": math.inf}, "options.repetition_penalty"),
        ({"seed": -1}, "options.seed"),
        ({"seed": 1 << 64}, "options.seed"),
    ],
)
def test_invalid_settings_name_the_field(changes, field):
    with pytest.raises(InvalidArgument) as caught:
        GenerationSettings(**changes).validate()
    assert caught.value.field == field
    assert field.split(".")[1] in caught.value.message


@pytest.mark.parametrize(
    "changes",
    [
        {"num_beams": 16},
        {"min_length": 0, "max_length": 1},
        {"min_length": 48},
        {"top_p": 1.0},
        {"seed": (1 << 64) - 1},
    ],
)
def test_boundary_settings_are_valid(changes):
    settings = GenerationSettings(**changes)
    assert settings.validate() is settings


def test_batch_key_ignores_sampling_fields_only_for_beam_search():
    beam = GenerationSettings(seed=5, top_p=0.5)
    assert beam.batch_key() == GenerationSettings()
    assert GenerationSettings(prefix="a photo of").batch_key() != GenerationSettings().batch_key()
    sampled = GenerationSettings(sample=True, seed=5, top_p=0.5)
    assert sampled.batch_key() == sampled
    assert sampled.batch_key() != GenerationSettings(sample=True, seed=6, top_p=0.5).batch_key()


def test_batching_from_env():
    assert BatchingSettings.from_env({}) == BatchingSettings(max_batch_size=16, max_delay_seconds=0.010)
    env = {"TISTUDIO_CAPTION_MAX_BATCH": "1", "TISTUDIO_CAPTION_MAX_DELAY_MS": "2.5"}
    assert BatchingSettings.from_env(env) == BatchingSettings(max_batch_size=1, max_delay_seconds=0.0025)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TISTUDIO_CAPTION_MAX_BATCH", "0"),
        ("TISTUDIO_CAPTION_MAX_BATCH", "eight"),
        ("TISTUDIO_CAPTION_MAX_DELAY_MS", "-1"),
        ("TISTUDIO_CAPTION_MAX_DELAY_MS", "nan"),
    ],
)
def test_bad_batching_variables_are_named(name, raw):
    with pytest.raises(InvalidArgument, match=name):
        BatchingSettings.from_env({name: raw})


def test_batching_settings_reject_nonsense():
    with pytest.raises(InvalidArgument) as caught:
        BatchingSettings(max_batch_size=0)
    assert caught.value.field == "max_batch_size"
    with pytest.raises(InvalidArgument) as caught:
        BatchingSettings(max_delay_seconds=-0.1)
    assert caught.value.field == "max_delay_seconds"
