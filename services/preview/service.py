"""How the preview service starts: its settings, its default model, and its gRPC registration."""

from __future__ import annotations

from services.common.model_pool import ModelPool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from services.common.settings import EnvReader
from tistudio.preview.v1 import preview_pb2, preview_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    # TISTUDIO_SD_MODEL: the base model loaded before the service turns SERVING, so the first request does not
    # wait for it. Requests may name other models; those load on demand.
    default_model = EnvReader(context.env).text("TISTUDIO_SD_MODEL")
    models = ModelPool(context.store, context.runtime.cache_dir, env=context.env)
    # The RPCs arrive with the preview issue; until then the generated servicer answers UNIMPLEMENTED.
    servicer = preview_pb2_grpc.PreviewServiceServicer()
    return ServiceParts(
        register=lambda server: preview_pb2_grpc.add_PreviewServiceServicer_to_server(servicer, server),
        load=lambda: default_model and models.stable_diffusion(default_model),
    )


DEFINITION = ServiceDefinition(
    name="preview",
    grpc_service=preview_pb2.DESCRIPTOR.services_by_name["PreviewService"].full_name,
    build=build,
)
