"""How the caption service starts: its settings, its captioner, and its gRPC registration."""

from __future__ import annotations

from services.caption.captioning import BatchingSettings, Captioner, CaptionMetrics
from services.caption.servicer import CaptionServicer
from services.common.errors import InvalidArgument
from services.common.model_pool import ModelPool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from services.common.settings import EnvReader
from tistudio.caption.v1 import caption_pb2, caption_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    # TISTUDIO_CAPTION_MODEL: the BLIP captioner every replica loads before it turns SERVING; requests may name
    # other BLIP models, which load on first use.
    model = EnvReader(context.env).text("TISTUDIO_CAPTION_MODEL")
    if model is None:
        raise InvalidArgument(
            "TISTUDIO_CAPTION_MODEL is not set; set it to a BLIP captioning model reference, e.g. a local copy of "
            "Salesforce/blip-image-captioning-base or models/tiny-blip"
        )
    models = ModelPool(context.store, context.runtime.cache_dir, device=context.runtime.device, env=context.env)
    metrics = CaptionMetrics(context.registry)
    captioner = Captioner(
        models.blip,
        model,
        batching=BatchingSettings.from_env(context.env),
        metrics=metrics,
        device=context.runtime.device,
    )
    servicer = CaptionServicer(context.store, captioner, metrics)
    return ServiceParts(
        register=lambda server: caption_pb2_grpc.add_CaptionServiceServicer_to_server(servicer, server),
        # Load and place the default captioner before SERVING, so the first request does not wait for it.
        load=lambda: captioner.blip(model),
    )


DEFINITION = ServiceDefinition(
    name="caption",
    grpc_service=caption_pb2.DESCRIPTOR.services_by_name["CaptionService"].full_name,
    build=build,
)
