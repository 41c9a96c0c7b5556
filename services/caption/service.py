"""How the caption service starts: its settings, its model, and its gRPC registration."""

from __future__ import annotations

from services.common.errors import InvalidArgument
from services.common.model_pool import ModelPool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from services.common.settings import EnvReader
from tistudio.caption.v1 import caption_pb2, caption_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    # TISTUDIO_CAPTION_MODEL: the BLIP captioner every replica loads before it turns SERVING.
    model = EnvReader(context.env).text("TISTUDIO_CAPTION_MODEL")
    if model is None:
        raise InvalidArgument(
            "TISTUDIO_CAPTION_MODEL is not set; set it to a BLIP captioning model reference, e.g. a local copy of "
            "Salesforce/blip-image-captioning-base or models/tiny-blip"
        )
    models = ModelPool(context.store, context.runtime.cache_dir, env=context.env)
    # The RPCs arrive with the caption issue; until then the generated servicer answers UNIMPLEMENTED.
    servicer = caption_pb2_grpc.CaptionServiceServicer()
    return ServiceParts(
        register=lambda server: caption_pb2_grpc.add_CaptionServiceServicer_to_server(servicer, server),
        load=lambda: models.blip(model),
    )


DEFINITION = ServiceDefinition(
    name="caption",
    grpc_service=caption_pb2.DESCRIPTOR.services_by_name["CaptionService"].full_name,
    build=build,
)
