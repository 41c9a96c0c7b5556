"""The CaptionService RPCs: protobuf in, domain call, protobuf out. No image or model work happens here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from services.caption import convert
from services.caption.caption_dataset import caption_dataset
from services.caption.caption_images import caption_images
from services.caption.captioning import Captioner, CaptionMetrics
from services.caption.dataset_lint import lint_stored_dataset
from services.caption.preprocess import preprocess_dataset
from services.common.convert import model_info, own_store_key
from services.common.storage import Store
from tistudio.caption.v1 import caption_pb2 as pb
from tistudio.caption.v1 import caption_pb2_grpc

__all__ = ["CaptionServicer"]


class CaptionServicer(caption_pb2_grpc.CaptionServiceServicer):
    def __init__(self, store: Store, captioner: Captioner, metrics: CaptionMetrics) -> None:
        self._store = store
        self._captioner = captioner
        self._metrics = metrics

    def Preprocess(
        self, request: pb.PreprocessRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PreprocessResponse]:
        source = own_store_key(request.source, self._store, field="source")
        destination = own_store_key(request.destination, self._store, field="destination")
        settings = convert.preprocess_settings(request.options)
        events = preprocess_dataset(
            self._store, source, destination, settings, captioner=self._captioner, metrics=self._metrics
        )
        for event in events:
            yield convert.preprocess_event(event)

    def Caption(self, request: pb.CaptionRequest, context: grpc.ServicerContext) -> pb.CaptionResponse:
        settings = convert.caption_settings(request.options)
        inputs = convert.image_inputs(request, self._store)
        captions = caption_images(self._store, inputs, settings, captioner=self._captioner, metrics=self._metrics)
        reference = settings.model or self._captioner.default_model
        return pb.CaptionResponse(
            results=[convert.caption_result(caption) for caption in captions],
            model=model_info(reference, self._captioner.fingerprint(settings.model)),
        )

    def CaptionDataset(
        self, request: pb.CaptionDatasetRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.CaptionDatasetResponse]:
        dataset = own_store_key(request.dataset, self._store, field="dataset")
        settings = convert.caption_settings(request.options)
        policy = convert.caption_policy(request.policy)
        events = caption_dataset(
            self._store, dataset, settings, policy, captioner=self._captioner, metrics=self._metrics
        )
        for event in events:
            yield convert.caption_dataset_event(event)

    def LintDataset(self, request: pb.LintDatasetRequest, context: grpc.ServicerContext) -> pb.LintDatasetResponse:
        dataset = own_store_key(request.dataset, self._store, field="dataset")
        report, report_key = lint_stored_dataset(
            self._store, dataset, convert.lint_settings(request), write_report=request.write_report
        )
        return convert.lint_response(report, report_key)
