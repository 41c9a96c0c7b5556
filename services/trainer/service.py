"""How the trainer service starts: its models and its gRPC registration."""

from __future__ import annotations

from services.common.model_pool import stable_diffusion_pool
from services.common.runtime import ServiceContext, ServiceDefinition, ServiceParts
from tistudio.trainer.v1 import trainer_pb2, trainer_pb2_grpc

__all__ = ["DEFINITION"]


def build(context: ServiceContext) -> ServiceParts:
    _models, preload = stable_diffusion_pool(context)
    # The RPCs arrive with the trainer issue; until then the generated servicer answers UNIMPLEMENTED.
    servicer = trainer_pb2_grpc.TrainerServiceServicer()
    return ServiceParts(
        register=lambda server: trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server),
        load=preload,
    )


DEFINITION = ServiceDefinition(
    name="trainer",
    grpc_service=trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name,
    build=build,
)
