"""The trainer's side of the preview service: a `PreviewRenderer` that calls PreviewService.RenderPreviews.

    renderer = GrpcPreviewRenderer.from_env(os.environ)   # None when TISTUDIO_PREVIEW_ADDRESS is not set

Settings: TISTUDIO_PREVIEW_ADDRESS (host:port), TISTUDIO_PREVIEW_TOKEN (sent as a bearer token when the preview
service has auth on), TISTUDIO_PREVIEW_TIMEOUT_SECONDS (default 300: a grid of SD images on a busy GPU).
A status the trainer cannot act on becomes a `PreviewUnavailable` whose code says which case it was; the job's
notice carries it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import grpc

from services.common.errors import InvalidArgument
from services.common.settings import EnvReader
from services.trainer.job_spec import SAMPLERS
from services.trainer.jobs.model import PreviewInfo
from services.trainer.previews import PreviewRequest, PreviewUnavailable
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2, preview_pb2_grpc

__all__ = ["GrpcPreviewRenderer"]

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class GrpcPreviewRenderer:
    def __init__(self, address: str, *, token: str = "", timeout: float = 300.0) -> None:
        self.address = address
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = grpc.insecure_channel(address)
        self._stub = preview_pb2_grpc.PreviewServiceStub(self._channel)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GrpcPreviewRenderer | None:
        read = EnvReader(env)
        address = read.text("TISTUDIO_PREVIEW_ADDRESS")
        if address is None:
            return None
        timeout_text = read.text("TISTUDIO_PREVIEW_TIMEOUT_SECONDS") or "300"
        try:
            timeout = float(timeout_text)
        except ValueError:
            timeout = -1.0
        if not (math.isfinite(timeout) and timeout > 0):  # grpc takes an infinite timeout as already expired
            raise InvalidArgument(
                f"TISTUDIO_PREVIEW_TIMEOUT_SECONDS={timeout_text!r} is not a positive number of seconds",
                field="TISTUDIO_PREVIEW_TIMEOUT_SECONDS",
            )
        return cls(address, token=read.text("TISTUDIO_PREVIEW_TOKEN") or "", timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def render(self, request: PreviewRequest) -> PreviewInfo:
        try:
            response = self._stub.RenderPreviews(_to_proto(request), timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise _unavailable(error, self.address) from None
        prompts = request.prompts
        items = tuple(
            {
                "prompt": prompts[image.prompt_index] if image.prompt_index < len(prompts) else "",
                "seed": image.seed,
                "weight": image.weight,
                "image_key": image.image.image.ref.key,
            }
            for image in response.images
        )
        return PreviewInfo(step=request.step, manifest_key=response.manifest.key, items=items)


def _to_proto(request: PreviewRequest) -> preview_pb2.RenderPreviewsRequest:
    settings = request.settings
    return preview_pb2.RenderPreviewsRequest(
        model=common_pb2.ModelRef(reference=request.model, config_reference=request.model_config),
        embedding=preview_pb2.EmbeddingRef(
            file=common_pb2.StorageRef(key=request.embedding_key), trigger=request.trigger
        ),
        prompts=request.prompts,
        negative_prompt=settings.negative_prompt,
        seeds=settings.seeds,
        weights=settings.weights,
        sampling=preview_pb2.SamplingSettings(
            steps=settings.steps,
            cfg_scale=settings.cfg_scale,
            sampler=SAMPLERS.index(settings.sampler) + 1,  # Sampler numbers follow SAMPLERS, from 1
            width=settings.width,
            height=settings.height,
        ),
        output=common_pb2.StorageRef(key=request.output_prefix),
        step=request.step,
        job_id=request.job_id,
    )


def _unavailable(error: grpc.RpcError, address: str) -> PreviewUnavailable:
    code, details = error.code(), error.details() or ""
    if code in _UNREACHABLE:
        return PreviewUnavailable(
            "PREVIEW_SERVICE_UNREACHABLE",
            f"the preview service at {address} did not answer ({code.name}: {details}); training goes on",
            "Check that the preview service is running and TISTUDIO_PREVIEW_ADDRESS points at it.",
        )
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return PreviewUnavailable(
            "PREVIEW_SERVICE_UNIMPLEMENTED",
            f"the service at {address} does not render previews (RenderPreviews is unimplemented there)",
            "Point TISTUDIO_PREVIEW_ADDRESS at a tistudio preview service.",
        )
    return PreviewUnavailable(
        "PREVIEW_REFUSED", f"the preview service refused the request ({code.name}): {details}", ""
    )
