"""tistudio.trainer.v1 messages <-> trainer domain values. The servicer calls only these, so every proto quirk
(unset vs. zero, enum numbers, float32 fields, POSIX seconds vs. Timestamp) is handled here, once.

    request = training_request(spec, store, default_model=config.model)
    plan = plan_request(request.fields, request.recipe, store=store, components=components, embedding=embedding)

A request becomes only the fields the caller set (`recipes.resolve_spec` layers them over the recipe and the
defaults); the resolved spec goes back with every field set, so sending it again trains exactly the same thing.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.convert import diagnostic_to_proto, family_to_proto, own_store_key, storage_ref
from services.common.embeddings import EmbeddingFormat
from services.common.errors import InvalidArgument
from services.common.storage import Store
from services.trainer.embedding_ops import ModelIdentity, StoredEmbedding
from services.trainer.engine.spec import CLIPPING_MODES, LATENT_SAMPLING, PRECISIONS
from services.trainer.job_spec import NON_FINITE_ACTIONS, SAMPLERS, JobSpec, PreviewSettings
from services.trainer.plan import TrainingPlan
from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as pb

__all__ = [
    "TrainingRequest",
    "embedding_format",
    "embedding_to_proto",
    "exported_file",
    "fields_of",
    "format_to_proto",
    "model_identity_to_proto",
    "model_record_to_proto",
    "model_reference",
    "plan_to_proto",
    "training_request",
    "training_spec_to_proto",
]

# TrainingSpec fields by how the proto carries them. `optional` scalars count only when present (0 and false are
# real values); plain strings and sizes count only when non-empty/non-zero (0 means the family default).
_OPTIONAL = tuple(
    "warmup_steps max_steps batch_size gradient_accumulation shuffle_tags keep_tags flip alpha_loss_weight "
    "save_every_steps preview_every_steps seed log_every_steps".split()
)
_OPTIONAL_FLOATS = ("tag_dropout", "weight_decay", "min_snr_gamma", "noise_offset")
_STRINGS = ("learning_rate", "template", "template_text", "gradient_clip")
_SIZES = ("width", "height")


def _by_name(module: Any, prefix: str, values: Iterable[Any]) -> dict[int, Any]:
    """Enum number -> domain value, pairing `<PREFIX><VALUE upper>` with each domain string. The proto's value
    names spell the domain's strings, so a choice added on one side only fails here, at import, not in a request."""
    return {getattr(module, prefix + str(v).upper()): v for v in values}


_ENUMS: dict[str, dict[int, str]] = {
    "lr_scheduler": _by_name(pb, "LR_SCHEDULER_", ("a1111", "constant", "linear", "cosine")),
    "latent_sampling": _by_name(pb, "LATENT_SAMPLING_", LATENT_SAMPLING),
    "gradient_clipping": _by_name(pb, "GRADIENT_CLIPPING_", CLIPPING_MODES),
    "precision": _by_name(pb, "PRECISION_", PRECISIONS),
}
_ENUM_NUMBERS = {name: {text: number for number, text in table.items()} for name, table in _ENUMS.items()}
# EmbeddingFormat.PNG has no proto value: it is a read-only source format.
_FORMATS = {
    number: EmbeddingFormat[name]
    for number, name in _by_name(pb, "EMBEDDING_FORMAT_", ("SAFETENSORS", "A1111_PT", "DIFFUSERS")).items()
}
_FORMAT_NUMBERS = {fmt: number for number, fmt in _FORMATS.items()}
_NON_FINITE = _by_name(pb, "NON_FINITE_ACTION_", NON_FINITE_ACTIONS)
_NON_FINITE_NUMBERS = {text: number for number, text in _NON_FINITE.items()}
_SAMPLERS = _by_name(common_pb2, "SAMPLER_", SAMPLERS)
_SAMPLER_NUMBERS = {text: number for number, text in _SAMPLERS.items()}
_MODEL_KEYS = ("reference", "name", "family", "sha256", "short_hash", "prediction_type", "embedding_dims")


@dataclass(frozen=True)
class TrainingRequest:
    fields: dict[str, Any]  # only the set fields, by TrainingSpec name, plus preview_every_steps: plan_request's input
    recipe: str | None
    embedding_key: str
    model: str
    preview: PreviewSettings
    non_finite: str


def fields_of(source: Any, names: str) -> dict[str, Any]:
    """The space-separated attributes of `source`, None as 0: the proto's numbers have no "unknown"."""
    return {name: 0 if (value := getattr(source, name)) is None else value for name in names.split()}


def _f32(value: float) -> float:
    """A proto float as the shortest decimal that is the same float32: a caller's 0.1 arrives as
    0.10000000149011612, which would differ from a recipe's 0.1 and break the resolved spec's round trip."""
    if not math.isfinite(value):
        return value
    bits = struct.pack("<f", value)
    for digits in range(1, 10):
        shortest = float(f"{value:.{digits}g}")
        if struct.pack("<f", shortest) == bits:
            return shortest
    return value


def _enum(value: int, table: Mapping[int, Any], field: str) -> Any:
    """The domain value of an enum number; None for UNSPECIFIED. proto3 enums are open, so any number can arrive."""
    if value == 0:
        return None
    if value not in table:
        raise InvalidArgument(f"{field} {value} is not a known value of the enum", field=field)
    return table[value]


def model_reference(ref: common_pb2.ModelRef, default_model: str, *, field: str) -> str:
    """The model to load: the caller's reference, else the trainer's configured default."""
    if not (ref.reference or default_model):
        raise InvalidArgument(
            f"{field} is empty and the trainer has no default model: name a model in {field}.reference, or "
            "configure TISTUDIO_SD_MODEL on the trainer",
            field=field,
        )
    return ref.reference or default_model


def training_request(spec: pb.TrainingSpec, store: Store, *, default_model: str) -> TrainingRequest:
    embedding = own_store_key(spec.embedding, store, field="spec.embedding")
    if not embedding:
        raise InvalidArgument(
            "spec.embedding is empty: set its key to the embedding file to train (CreateEmbedding makes one, e.g. "
            "embeddings/<name>.safetensors) or to a savepoint's embedding to continue from it",
            field="spec.embedding",
        )
    dataset = own_store_key(spec.dataset, store, field="spec.dataset")
    if not dataset:
        raise InvalidArgument(
            "spec.dataset is empty: set its key to the store prefix holding the training images with their "
            "<stem>.txt captions (e.g. datasets/anna/train/)",
            field="spec.dataset",
        )
    model = model_reference(spec.model, default_model, field="spec.model")
    fields: dict[str, Any] = {"model": model, "embedding_key": embedding, "dataset": dataset.rstrip("/") + "/"}
    if spec.model.config_reference:
        fields["model_config"] = spec.model.config_reference
    fields.update({name: getattr(spec, name) for name in _OPTIONAL if spec.HasField(name)})
    fields.update({name: _f32(getattr(spec, name)) for name in _OPTIONAL_FLOATS if spec.HasField(name)})
    fields.update({name: getattr(spec, name) for name in (*_STRINGS, *_SIZES) if getattr(spec, name)})
    for name, table in _ENUMS.items():
        value = _enum(getattr(spec, name), table, f"spec.{name}")
        if value is not None:
            fields[name] = value
    if spec.extra_formats:
        # .safetensors is always written, so naming it is harmless; a list of only it asks for no extras.
        extras: list[str] = []
        for number in spec.extra_formats:
            fmt = _enum(number, _FORMATS, "spec.extra_formats")
            if fmt not in (None, EmbeddingFormat.SAFETENSORS) and fmt.value not in extras:
                extras.append(fmt.value)
        fields["extra_formats"] = tuple(extras)
    return TrainingRequest(
        fields=fields,
        recipe=spec.recipe or None,
        embedding_key=embedding,
        model=model,
        preview=_preview_settings(spec.preview),
        non_finite=_enum(spec.non_finite, _NON_FINITE, "spec.non_finite") or "fail",
    )


def _preview_settings(preview: pb.PreviewSettings) -> PreviewSettings:
    values = {
        "prompts": tuple(preview.prompts),
        "negative_prompt": preview.negative_prompt,
        "seeds": tuple(preview.seeds),
        "weights": tuple(_f32(w) for w in preview.weights),
        "steps": preview.steps if preview.HasField("steps") else None,
        "cfg_scale": _f32(preview.cfg_scale) if preview.HasField("cfg_scale") else None,
        "sampler": _enum(preview.sampler, _SAMPLERS, "spec.preview.sampler"),
        "width": preview.width,
        "height": preview.height,
    }
    # Unset ones take PreviewSettings' defaults; it raises InvalidArgument naming spec.preview.<field> itself.
    return PreviewSettings(**{name: value for name, value in values.items() if value is not None})


def training_spec_to_proto(job: JobSpec, *, embedding_key: str) -> pb.TrainingSpec:
    """The resolved spec with every field set, so a client can send it back as a request unchanged."""
    training, preview = job.training, job.preview
    out = pb.TrainingSpec(
        embedding=storage_ref(embedding_key),
        model=common_pb2.ModelRef(reference=training.model, config_reference=training.model_config),
        dataset=storage_ref(training.dataset),
        recipe=job.recipe,
        preview_every_steps=job.preview_every_steps,
        preview=pb.PreviewSettings(
            **fields_of(preview, "prompts negative_prompt seeds weights steps cfg_scale width height"),
            sampler=_SAMPLER_NUMBERS[preview.sampler],
        ),
        extra_formats=[_FORMAT_NUMBERS[EmbeddingFormat(fmt)] for fmt in training.extra_formats],
        non_finite=_NON_FINITE_NUMBERS[job.non_finite],
    )
    for name in (*_OPTIONAL, *_OPTIONAL_FLOATS, *_STRINGS, *_SIZES):
        # preview_every_steps is the job's (set above); min_snr_gamma / noise_offset None means off, i.e. unset.
        value = getattr(training, name, None)
        if value is not None:
            setattr(out, name, value)
    for name, numbers in _ENUM_NUMBERS.items():
        setattr(out, name, numbers[getattr(training, name)])
    return out


def model_identity_to_proto(identity: ModelIdentity) -> common_pb2.ModelInfo:
    return _model_info(**{name: getattr(identity, name) for name in _MODEL_KEYS})


def model_record_to_proto(model: Mapping[str, Any]) -> common_pb2.ModelInfo:
    """A job record's `model` (ModelIdentity's fields as plain JSON) as ModelInfo."""
    return _model_info(**{key: value for key, value in model.items() if key in _MODEL_KEYS})


def _model_info(*, family: str = "", prediction_type: str = "", embedding_dims=(), **text: str) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(
        family=family_to_proto(family, prediction_type),
        prediction_type=prediction_type,
        embedding_dims=embedding_dims,
        **text,
    )


def plan_to_proto(plan: TrainingPlan, job: JobSpec) -> pb.PlanTrainingResponse:
    key = job.training.embedding_key
    return pb.PlanTrainingResponse(
        plan=pb.TrainingPlan(
            resolved=training_spec_to_proto(job, embedding_key=key),
            model=model_identity_to_proto(plan.model),
            embedding=pb.Embedding(
                **fields_of(plan.embedding, "name dims init_text step"),
                vectors_per_token=plan.embedding.vectors,
                file=storage_ref(key),
            ),
            **fields_of(plan, "images samples_per_step steps_per_epoch epochs start_step end_step example_prompts"),
            schedule=[pb.ScheduleSegment(**fields_of(s, "rate start_step end_step")) for s in plan.schedule],
            max_prompt_tokens=plan.max_prompt_tokens,
        ),
        diagnostics=[diagnostic_to_proto(d) for d in plan.diagnostics],
        ok=plan.ok,
    )


def embedding_format(value: int) -> EmbeddingFormat:
    return _enum(value, _FORMATS, "format") or EmbeddingFormat.SAFETENSORS


def format_to_proto(fmt: EmbeddingFormat) -> int:
    return _FORMAT_NUMBERS.get(fmt, pb.EMBEDDING_FORMAT_UNSPECIFIED)  # PNG has no proto value: it is read-only


def embedding_to_proto(stored: StoredEmbedding) -> pb.Embedding:
    return pb.Embedding(
        **fields_of(stored, "name dims init_text step sha256 short_hash"),
        vectors_per_token=stored.vectors,
        base_model=model_identity_to_proto(stored.model) if stored.model is not None else None,
        file=storage_ref(stored.key),
        format=format_to_proto(stored.format),
        metadata=dict(stored.metadata),
    )


def exported_file(stored: StoredEmbedding, data: bytes | None) -> pb.ExportedFile:
    return pb.ExportedFile(
        file=storage_ref(stored.key), sha256=stored.sha256, text_encoder=stored.text_encoder, data=data or b""
    )
