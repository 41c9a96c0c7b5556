"""The PreviewService RPCs: protobuf in, domain call, protobuf out. No model or image work happens here."""

from __future__ import annotations

import grpc

from services.common.convert import family_to_proto, model_info, own_store_key, storage_ref
from services.common.errors import InvalidArgument
from services.preview import convert
from services.preview.contact_sheets import final_exam, progress_sheet
from services.preview.evaluation import evaluate_savepoints
from services.preview.metrics import PreviewMetrics
from services.preview.preview_grid import render_previews
from services.preview.studio import PreviewStudio
from tistudio.preview.v1 import preview_pb2 as pb
from tistudio.preview.v1 import preview_pb2_grpc

__all__ = ["PreviewServicer"]


class PreviewServicer(preview_pb2_grpc.PreviewServiceServicer):
    def __init__(self, studio: PreviewStudio, metrics: PreviewMetrics, *, max_message_bytes: int) -> None:
        self._studio = studio
        self._metrics = metrics
        self._max_message_bytes = max_message_bytes

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> pb.GenerateResponse:
        spec = convert.generate_spec(request, self._studio.store)
        with self._metrics.render("generate") as made:
            generation = self._studio.generate(spec)
            made(len(generation.files))
        if request.include_data:
            convert.inline_budget([len(f.rendered.png) for f in generation.files], self._max_message_bytes)
        model = generation.model
        components = model.components
        return pb.GenerateResponse(
            images=[convert.generated_image(f, inline=request.include_data) for f in generation.files],
            model=model_info(
                model.reference,
                components.fingerprint,
                family=family_to_proto(components.family, components.prediction_type),
                prediction_type=components.prediction_type,
                embedding_dims=model.embedding_dims,
            ),
        )

    def RenderPreviews(
        self, request: pb.RenderPreviewsRequest, context: grpc.ServicerContext
    ) -> pb.RenderPreviewsResponse:
        spec = convert.preview_grid_spec(request, self._studio.store)
        with self._metrics.render("previews") as made:
            result = render_previews(self._studio, spec)
            made(len(result.images))
        return pb.RenderPreviewsResponse(
            images=[convert.preview_image(image) for image in result.images],
            manifest=storage_ref(result.manifest_key),
        )

    def ContactSheet(self, request: pb.ContactSheetRequest, context: grpc.ServicerContext) -> pb.ContactSheetResponse:
        if request.kind == pb.SHEET_KIND_PROGRESS:
            job_output = own_store_key(request.job_output, self._studio.store, field="job_output")
            if not job_output:
                raise InvalidArgument(
                    "job_output.key is empty; pass the job's output prefix (GetJob's output)", field="job_output.key"
                )
            sheet = progress_sheet(
                self._studio.store,
                job_output,
                prompt_index=request.prompt_index,
                columns=convert.sheet_columns(request.columns),
                output_key=own_store_key(request.output, self._studio.store, field="output"),
                cell_size=request.cell_size,
            )
        elif request.kind == pb.SHEET_KIND_FINAL_EXAM:
            with self._metrics.render("sheet") as made:
                sheet = final_exam(self._studio, convert.final_exam_spec(request, self._studio.store))
                made(sheet.rows)
        else:
            raise InvalidArgument(
                "kind is unset; pass SHEET_KIND_PROGRESS (a job's previews) or SHEET_KIND_FINAL_EXAM", field="kind"
            )
        if request.include_data:
            convert.inline_budget([len(sheet.png)], self._max_message_bytes)
        return convert.sheet_response(sheet, inline=request.include_data)

    def Evaluate(self, request: pb.EvaluateRequest, context: grpc.ServicerContext) -> pb.EvaluateResponse:
        spec = convert.evaluate_spec(request, self._studio.store)
        with self._metrics.render("evaluate") as made:
            result = evaluate_savepoints(self._studio, spec)
            made(result.images_rendered)
        return convert.evaluate_response(result)
