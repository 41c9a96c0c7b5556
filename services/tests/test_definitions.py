"""Each real service starts from its definition with the tiny models, loads them, and serves its API."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.common.errors import InvalidArgument
from services.common.runtime import start_service
from services.definitions import DEFINITIONS


def _env(name: str, tmp_path, tiny_models) -> dict[str, str]:
    return {
        "TISTUDIO_STORE_URL": (tmp_path / "store").as_uri(),
        "TISTUDIO_CACHE_DIR": str(tmp_path / "cache"),
        f"TISTUDIO_{name.upper()}_PORT": "0",
        f"TISTUDIO_{name.upper()}_METRICS_PORT": "off",
        "TISTUDIO_DRAIN_SECONDS": "0",
        "TISTUDIO_CAPTION_MODEL": str(tiny_models["blip"]),
        "TISTUDIO_SD_MODEL": str(tiny_models["sd"]),
    }


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_service_loads_its_models_and_serves_its_api(name, tmp_path, tiny_models):
    definition = DEFINITIONS[name]
    running = start_service(definition, _env(name, tmp_path, tiny_models))
    try:
        assert running.loaded.wait(120), "models did not load"
        with grpc.insecure_channel(running.server.address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=definition.grpc_service), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert definition.grpc_service in services
        assert definition.grpc_service == f"tistudio.{name}.v1.{name.capitalize()}Service"
    finally:
        running.server.stop(grace=0)
    assert running.wait() == 0


def test_caption_service_refuses_to_start_without_a_captioner(tmp_path, tiny_models):
    env = _env("caption", tmp_path, tiny_models)
    del env["TISTUDIO_CAPTION_MODEL"]
    with pytest.raises(InvalidArgument, match="TISTUDIO_CAPTION_MODEL"):
        start_service(DEFINITIONS["caption"], env)


def test_a_bad_model_reference_stops_the_service(tmp_path, tiny_models):
    env = {**_env("trainer", tmp_path, tiny_models), "TISTUDIO_SD_MODEL": str(tmp_path / "no-such-model")}
    running = start_service(DEFINITIONS["trainer"], env)
    assert running.wait() == 1
