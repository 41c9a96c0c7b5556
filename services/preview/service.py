"""How the preview service starts: its settings, models, sampler thread and gRPC registration.

Settings besides the shared ones (services/common/settings.py):
    TISTUDIO_SD_MODEL                 the base model loaded before SERVING, and the default of requests naming none
    TISTUDIO_CLIP_MODEL               the CLIPModel that Evaluate scores with when a request names none
    TISTUDIO_PREVIEW_MAX_BATCH        images sampled together at most (default 8; concurrent requests share batches)
    TISTUDIO_PREVIEW_MODEL_MEMORY_GIB memory the loaded models may take before the least recently used is dropped
                                      (default: unlimited; set it on GPUs that serve several base models)
"""

from __future__ import annotations

from services.common.model_pool import stable_diffusion_pool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from services.common.settings import EnvReader, positive_float, positive_int
from services.preview.embedding_library import EmbeddingLibrary
from services.preview.metrics import PreviewMetrics
from services.preview.rendering import Renderer
from services.preview.servicer import PreviewServicer
from services.preview.studio import PreviewStudio
from tistudio.preview.v1 import preview_pb2, preview_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    read = EnvReader(context.env)
    max_batch = read.parse("TISTUDIO_PREVIEW_MAX_BATCH", 8, positive_int, "a whole number of images, at least 1")
    budget_gib = read.parse("TISTUDIO_PREVIEW_MODEL_MEMORY_GIB", None, positive_float, "a number of GiB above 0")
    models, preload = stable_diffusion_pool(
        context, memory_budget_bytes=None if budget_gib is None else int(budget_gib * 2**30)
    )
    renderer: Renderer
    metrics = PreviewMetrics(
        context.registry,
        queue_depth=lambda: renderer.queue_depth,
        loaded_models=models.loaded,
        loaded_bytes=models.loaded_bytes,
    )
    renderer = Renderer(
        max_batch=max_batch,
        on_batch=lambda images, steps, seconds: metrics.batch_ran(
            images=images, denoising_steps=steps, seconds=seconds
        ),
    )
    studio = PreviewStudio(
        context.store,
        models,
        EmbeddingLibrary(context.store),
        renderer,
        default_model=read.text("TISTUDIO_SD_MODEL"),
        default_clip=read.text("TISTUDIO_CLIP_MODEL"),
    )
    servicer = PreviewServicer(studio, metrics, max_message_bytes=context.server.max_message_bytes)

    return ServiceParts(
        register=lambda server: preview_pb2_grpc.add_PreviewServiceServicer_to_server(servicer, server),
        load=preload,
    )


DEFINITION = ServiceDefinition(
    name="preview",
    grpc_service=preview_pb2.DESCRIPTOR.services_by_name["PreviewService"].full_name,
    build=build,
)
