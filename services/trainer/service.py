"""How the trainer service starts: its settings, its default model, and its gRPC registration."""

from __future__ import annotations

from services.common.model_pool import ModelPool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from services.common.settings import EnvReader
from tistudio.trainer.v1 import trainer_pb2, trainer_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    # TISTUDIO_SD_MODEL: the base model loaded before the service turns SERVING, so the first job does not wait
    # for it. Jobs may name other models; those load on demand.
    default_model = EnvReader(context.env).text("TISTUDIO_SD_MODEL")
    models = ModelPool(context.store, context.runtime.cache_dir, env=context.env)
    # The RPCs arrive with the trainer issue; until then the generated servicer answers UNIMPLEMENTED.
    servicer = trainer_pb2_grpc.TrainerServiceServicer()
    return ServiceParts(
        register=lambda server: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server),
        load=lambda: default_model and models.stable_diffusion(default_model),
    )


DEFINITION = ServiceDefinition(
    name="trainer",
    grpc_service=trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name,
    build=build,
)
