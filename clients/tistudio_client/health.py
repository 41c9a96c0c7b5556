"""gRPC health and reflection checks against running tistudio services."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tistudio_client.channels import open_channel

__all__ = ["SERVICE_NAMES", "ServiceHealth", "check_service"]

# The gRPC service each tistudio service serves, by its short name.
SERVICE_NAMES = {
    "caption": "tistudio.caption.v1.CaptionService",
    "trainer": "tistudio.trainer.v1.TrainerService",
    "preview": "tistudio.preview.v1.PreviewService",
}


@dataclass(frozen=True)
class ServiceHealth:
    name: str  # "caption", "trainer" or "preview"
    address: str
    status: str  # SERVING, NOT_SERVING, SERVICE_UNKNOWN, or UNREACHABLE
    services: tuple[str, ...] = ()  # what reflection lists (empty when reflection is off or unreachable)
    detail: str = ""  # why it is unreachable

    @property
    def serving(self) -> bool:
        return self.status == "SERVING"


def check_service(
    name: str,
    address: str,
    *,
    timeout: float = 5.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> ServiceHealth:
    """Ask `address` for the health of the named service and list its services through reflection."""
    with open_channel(address, credentials=credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAMES[name]), timeout=timeout
            )
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return ServiceHealth(name, address, "SERVICE_UNKNOWN", detail=err.details() or "")
            return ServiceHealth(name, address, "UNREACHABLE", detail=f"{err.code().name}: {err.details()}")
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return ServiceHealth(name, address, status, services=_reflected_services(channel))


def _reflected_services(channel: grpc.Channel) -> tuple[str, ...]:
    try:
        return tuple(sorted(ProtoReflectionDescriptorDatabase(channel).get_services()))
    except grpc.RpcError:
        return ()
