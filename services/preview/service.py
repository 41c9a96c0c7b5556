"""How the preview service starts: its models and its gRPC registration."""

from __future__ import annotations

from services.common.model_pool import stable_diffusion_pool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from tistudio.preview.v1 import preview_pb2, preview_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    _models, preload = stable_diffusion_pool(context)
    # The RPCs arrive with the preview issue; until then the generated servicer answers UNIMPLEMENTED.
    servicer = preview_pb2_grpc.PreviewServiceServicer()
    return ServiceParts(
        register=lambda server: preview_pb2_grpc.add_PreviewServiceServicer_to_server(servicer, server),
        load=preload,
    )


DEFINITION = ServiceDefinition(
    name="preview",
    grpc_service=preview_pb2.DESCRIPTOR.services_by_name["PreviewService"].full_name,
    build=build,
)
