"""Samplers: the names the trainer and the proto use, each a fresh diffusers scheduler from the model's config."""

from __future__ import annotations

import pytest
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)

from services.common.errors import InvalidArgument
from services.common.models.tiny import SD15_SCHEDULER
from services.preview.samplers import SAMPLERS, sampler_named
from services.trainer import job_spec
from tistudio.common.v1 import common_pb2

NAMES = [sampler.name for sampler in SAMPLERS]


@pytest.fixture
def sd15_config():
    return PNDMScheduler(**SD15_SCHEDULER).config


def test_names_and_order_match_the_trainer() -> None:
    assert tuple(NAMES) == job_spec.SAMPLERS


def test_order_matches_the_proto_enum_numbers() -> None:
    assert common_pb2.Sampler.Name(0) == "SAMPLER_UNSPECIFIED"
    assert [common_pb2.Sampler.Name(number) for number in range(1, len(SAMPLERS) + 1)] == [
        "SAMPLER_EULER_A",
        "SAMPLER_EULER",
        "SAMPLER_DPMPP_2M",
        "SAMPLER_DPMPP_2M_KARRAS",
        "SAMPLER_DDIM",
    ]
    assert len(common_pb2.Sampler.values()) == len(SAMPLERS) + 1
    for number, name in enumerate(NAMES, start=1):
        assert common_pb2.Sampler.Name(number) == f"SAMPLER_{name.upper()}"


@pytest.mark.parametrize(
    ("name", "display", "scheduler_class"),
    [
        ("euler_a", "Euler a", EulerAncestralDiscreteScheduler),
        ("euler", "Euler", EulerDiscreteScheduler),
        ("dpmpp_2m", "DPM++ 2M", DPMSolverMultistepScheduler),
        ("dpmpp_2m_karras", "DPM++ 2M Karras", DPMSolverMultistepScheduler),
        ("ddim", "DDIM", DDIMScheduler),
    ],
)
def test_each_sampler_builds_its_scheduler_from_the_model_config(
    sd15_config, name: str, display: str, scheduler_class: type
) -> None:
    sampler = sampler_named(name)
    assert sampler.name == name
    assert sampler.display_name == display
    scheduler = sampler.scheduler(sd15_config)
    assert type(scheduler) is scheduler_class
    for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type"):
        assert scheduler.config[key] == SD15_SCHEDULER[key], key
    scheduler.set_timesteps(20)
    assert len(scheduler.timesteps) == 20
    assert len(set(scheduler.timesteps.tolist())) == 20


def test_only_euler_a_is_stochastic() -> None:
    assert [sampler.name for sampler in SAMPLERS if sampler.stochastic] == ["euler_a"]


def test_dpmpp_samplers_are_second_order_dpmsolver_plus_plus_and_only_karras_uses_karras_sigmas(sd15_config) -> None:
    plain = sampler_named("dpmpp_2m").scheduler(sd15_config)
    karras = sampler_named("dpmpp_2m_karras").scheduler(sd15_config)
    for scheduler in (plain, karras):
        assert scheduler.config.algorithm_type == "dpmsolver++"
        assert scheduler.config.solver_order == 2
    assert karras.config.use_karras_sigmas is True
    assert plain.config.use_karras_sigmas is False
    plain.set_timesteps(20)
    karras.set_timesteps(20)
    assert plain.timesteps.tolist() != karras.timesteps.tolist()


def test_every_call_builds_a_fresh_scheduler(sd15_config) -> None:
    for sampler in SAMPLERS:
        first, second = sampler.scheduler(sd15_config), sampler.scheduler(sd15_config)
        assert first is not second
        first.set_timesteps(5)
        second.set_timesteps(20)
        assert len(first.timesteps) == 5


def test_an_unknown_sampler_is_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        sampler_named("dpmpp_sde")
    assert caught.value.field == "sampling.sampler"
    assert caught.value.reason == "UNKNOWN_SAMPLER"
    assert "dpmpp_sde" in caught.value.message
    assert "euler_a" in caught.value.message


@pytest.mark.parametrize("name", NAMES)
def test_a_v_prediction_config_keeps_its_prediction_type(name: str) -> None:
    config = PNDMScheduler(**{**SD15_SCHEDULER, "prediction_type": "v_prediction"}).config
    assert sampler_named(name).scheduler(config).config.prediction_type == "v_prediction"
