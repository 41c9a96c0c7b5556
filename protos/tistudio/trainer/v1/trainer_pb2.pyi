import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tistudio.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbeddingFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBEDDING_FORMAT_UNSPECIFIED: _ClassVar[EmbeddingFormat]
    EMBEDDING_FORMAT_SAFETENSORS: _ClassVar[EmbeddingFormat]
    EMBEDDING_FORMAT_A1111_PT: _ClassVar[EmbeddingFormat]
    EMBEDDING_FORMAT_DIFFUSERS: _ClassVar[EmbeddingFormat]

class LrScheduler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LR_SCHEDULER_UNSPECIFIED: _ClassVar[LrScheduler]
    LR_SCHEDULER_A1111: _ClassVar[LrScheduler]
    LR_SCHEDULER_CONSTANT: _ClassVar[LrScheduler]
    LR_SCHEDULER_LINEAR: _ClassVar[LrScheduler]
    LR_SCHEDULER_COSINE: _ClassVar[LrScheduler]

class LatentSampling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATENT_SAMPLING_UNSPECIFIED: _ClassVar[LatentSampling]
    LATENT_SAMPLING_ONCE: _ClassVar[LatentSampling]
    LATENT_SAMPLING_DETERMINISTIC: _ClassVar[LatentSampling]
    LATENT_SAMPLING_RANDOM: _ClassVar[LatentSampling]

class GradientClipping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRADIENT_CLIPPING_UNSPECIFIED: _ClassVar[GradientClipping]
    GRADIENT_CLIPPING_NONE: _ClassVar[GradientClipping]
    GRADIENT_CLIPPING_VALUE: _ClassVar[GradientClipping]
    GRADIENT_CLIPPING_NORM: _ClassVar[GradientClipping]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_AUTO: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_BF16: _ClassVar[Precision]
    PRECISION_FP16: _ClassVar[Precision]

class NonFiniteAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NON_FINITE_ACTION_UNSPECIFIED: _ClassVar[NonFiniteAction]
    NON_FINITE_ACTION_FAIL: _ClassVar[NonFiniteAction]
    NON_FINITE_ACTION_RETRY_HALF_RATE: _ClassVar[NonFiniteAction]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_PREPARING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_PAUSED: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
EMBEDDING_FORMAT_UNSPECIFIED: EmbeddingFormat
EMBEDDING_FORMAT_SAFETENSORS: EmbeddingFormat
EMBEDDING_FORMAT_A1111_PT: EmbeddingFormat
EMBEDDING_FORMAT_DIFFUSERS: EmbeddingFormat
LR_SCHEDULER_UNSPECIFIED: LrScheduler
LR_SCHEDULER_A1111: LrScheduler
LR_SCHEDULER_CONSTANT: LrScheduler
LR_SCHEDULER_LINEAR: LrScheduler
LR_SCHEDULER_COSINE: LrScheduler
LATENT_SAMPLING_UNSPECIFIED: LatentSampling
LATENT_SAMPLING_ONCE: LatentSampling
LATENT_SAMPLING_DETERMINISTIC: LatentSampling
LATENT_SAMPLING_RANDOM: LatentSampling
GRADIENT_CLIPPING_UNSPECIFIED: GradientClipping
GRADIENT_CLIPPING_NONE: GradientClipping
GRADIENT_CLIPPING_VALUE: GradientClipping
GRADIENT_CLIPPING_NORM: GradientClipping
PRECISION_UNSPECIFIED: Precision
PRECISION_AUTO: Precision
PRECISION_FP32: Precision
PRECISION_BF16: Precision
PRECISION_FP16: Precision
NON_FINITE_ACTION_UNSPECIFIED: NonFiniteAction
NON_FINITE_ACTION_FAIL: NonFiniteAction
NON_FINITE_ACTION_RETRY_HALF_RATE: NonFiniteAction
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_PREPARING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_PAUSED: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class Embedding(_message.Message):
    __slots__ = ("name", "vectors_per_token", "dims", "init_text", "step", "base_model", "file", "format", "sha256", "short_hash", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VECTORS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    INIT_TEXT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SHORT_HASH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    vectors_per_token: int
    dims: _containers.RepeatedScalarFieldContainer[int]
    init_text: str
    step: int
    base_model: _common_pb2.ModelInfo
    file: _common_pb2.StorageRef
    format: EmbeddingFormat
    sha256: str
    short_hash: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., vectors_per_token: _Optional[int] = ..., dims: _Optional[_Iterable[int]] = ..., init_text: _Optional[str] = ..., step: _Optional[int] = ..., base_model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., file: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., format: _Optional[_Union[EmbeddingFormat, str]] = ..., sha256: _Optional[str] = ..., short_hash: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateEmbeddingRequest(_message.Message):
    __slots__ = ("name", "init_text", "vectors_per_token", "model", "destination", "overwrite")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INIT_TEXT_FIELD_NUMBER: _ClassVar[int]
    VECTORS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    init_text: str
    vectors_per_token: int
    model: _common_pb2.ModelRef
    destination: _common_pb2.StorageRef
    overwrite: bool
    def __init__(self, name: _Optional[str] = ..., init_text: _Optional[str] = ..., vectors_per_token: _Optional[int] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., destination: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class CreateEmbeddingResponse(_message.Message):
    __slots__ = ("embedding",)
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    embedding: Embedding
    def __init__(self, embedding: _Optional[_Union[Embedding, _Mapping]] = ...) -> None: ...

class PreviewSettings(_message.Message):
    __slots__ = ("prompts", "negative_prompt", "seeds", "weights", "steps", "cfg_scale", "sampler", "width", "height")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedScalarFieldContainer[str]
    negative_prompt: str
    seeds: _containers.RepeatedScalarFieldContainer[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    steps: int
    cfg_scale: float
    sampler: _common_pb2.Sampler
    width: int
    height: int
    def __init__(self, prompts: _Optional[_Iterable[str]] = ..., negative_prompt: _Optional[str] = ..., seeds: _Optional[_Iterable[int]] = ..., weights: _Optional[_Iterable[float]] = ..., steps: _Optional[int] = ..., cfg_scale: _Optional[float] = ..., sampler: _Optional[_Union[_common_pb2.Sampler, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class TrainingSpec(_message.Message):
    __slots__ = ("embedding", "model", "dataset", "recipe", "learning_rate", "lr_scheduler", "warmup_steps", "max_steps", "batch_size", "gradient_accumulation", "width", "height", "template", "template_text", "shuffle_tags", "keep_tags", "tag_dropout", "latent_sampling", "flip", "alpha_loss_weight", "gradient_clipping", "gradient_clip", "weight_decay", "min_snr_gamma", "noise_offset", "precision", "save_every_steps", "preview_every_steps", "preview", "extra_formats", "non_finite", "seed", "log_every_steps")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_TEXT_FIELD_NUMBER: _ClassVar[int]
    SHUFFLE_TAGS_FIELD_NUMBER: _ClassVar[int]
    KEEP_TAGS_FIELD_NUMBER: _ClassVar[int]
    TAG_DROPOUT_FIELD_NUMBER: _ClassVar[int]
    LATENT_SAMPLING_FIELD_NUMBER: _ClassVar[int]
    FLIP_FIELD_NUMBER: _ClassVar[int]
    ALPHA_LOSS_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_CLIPPING_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_CLIP_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    MIN_SNR_GAMMA_FIELD_NUMBER: _ClassVar[int]
    NOISE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    SAVE_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FORMATS_FIELD_NUMBER: _ClassVar[int]
    NON_FINITE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LOG_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    embedding: _common_pb2.StorageRef
    model: _common_pb2.ModelRef
    dataset: _common_pb2.StorageRef
    recipe: str
    learning_rate: str
    lr_scheduler: LrScheduler
    warmup_steps: int
    max_steps: int
    batch_size: int
    gradient_accumulation: int
    width: int
    height: int
    template: str
    template_text: str
    shuffle_tags: bool
    keep_tags: int
    tag_dropout: float
    latent_sampling: LatentSampling
    flip: bool
    alpha_loss_weight: bool
    gradient_clipping: GradientClipping
    gradient_clip: str
    weight_decay: float
    min_snr_gamma: float
    noise_offset: float
    precision: Precision
    save_every_steps: int
    preview_every_steps: int
    preview: PreviewSettings
    extra_formats: _containers.RepeatedScalarFieldContainer[EmbeddingFormat]
    non_finite: NonFiniteAction
    seed: int
    log_every_steps: int
    def __init__(self, embedding: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., recipe: _Optional[str] = ..., learning_rate: _Optional[str] = ..., lr_scheduler: _Optional[_Union[LrScheduler, str]] = ..., warmup_steps: _Optional[int] = ..., max_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., gradient_accumulation: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., template: _Optional[str] = ..., template_text: _Optional[str] = ..., shuffle_tags: _Optional[bool] = ..., keep_tags: _Optional[int] = ..., tag_dropout: _Optional[float] = ..., latent_sampling: _Optional[_Union[LatentSampling, str]] = ..., flip: _Optional[bool] = ..., alpha_loss_weight: _Optional[bool] = ..., gradient_clipping: _Optional[_Union[GradientClipping, str]] = ..., gradient_clip: _Optional[str] = ..., weight_decay: _Optional[float] = ..., min_snr_gamma: _Optional[float] = ..., noise_offset: _Optional[float] = ..., precision: _Optional[_Union[Precision, str]] = ..., save_every_steps: _Optional[int] = ..., preview_every_steps: _Optional[int] = ..., preview: _Optional[_Union[PreviewSettings, _Mapping]] = ..., extra_formats: _Optional[_Iterable[_Union[EmbeddingFormat, str]]] = ..., non_finite: _Optional[_Union[NonFiniteAction, str]] = ..., seed: _Optional[int] = ..., log_every_steps: _Optional[int] = ...) -> None: ...

class PlanTrainingRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: TrainingSpec
    def __init__(self, spec: _Optional[_Union[TrainingSpec, _Mapping]] = ...) -> None: ...

class ScheduleSegment(_message.Message):
    __slots__ = ("rate", "start_step", "end_step")
    RATE_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    END_STEP_FIELD_NUMBER: _ClassVar[int]
    rate: float
    start_step: int
    end_step: int
    def __init__(self, rate: _Optional[float] = ..., start_step: _Optional[int] = ..., end_step: _Optional[int] = ...) -> None: ...

class TrainingPlan(_message.Message):
    __slots__ = ("resolved", "model", "embedding", "images", "samples_per_step", "steps_per_epoch", "epochs", "start_step", "end_step", "schedule", "example_prompts", "max_prompt_tokens")
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    START_STEP_FIELD_NUMBER: _ClassVar[int]
    END_STEP_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    resolved: TrainingSpec
    model: _common_pb2.ModelInfo
    embedding: Embedding
    images: int
    samples_per_step: int
    steps_per_epoch: int
    epochs: float
    start_step: int
    end_step: int
    schedule: _containers.RepeatedCompositeFieldContainer[ScheduleSegment]
    example_prompts: _containers.RepeatedScalarFieldContainer[str]
    max_prompt_tokens: int
    def __init__(self, resolved: _Optional[_Union[TrainingSpec, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., images: _Optional[int] = ..., samples_per_step: _Optional[int] = ..., steps_per_epoch: _Optional[int] = ..., epochs: _Optional[float] = ..., start_step: _Optional[int] = ..., end_step: _Optional[int] = ..., schedule: _Optional[_Iterable[_Union[ScheduleSegment, _Mapping]]] = ..., example_prompts: _Optional[_Iterable[str]] = ..., max_prompt_tokens: _Optional[int] = ...) -> None: ...

class PlanTrainingResponse(_message.Message):
    __slots__ = ("plan", "diagnostics", "ok")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    plan: TrainingPlan
    diagnostics: _containers.RepeatedCompositeFieldContainer[_common_pb2.Diagnostic]
    ok: bool
    def __init__(self, plan: _Optional[_Union[TrainingPlan, _Mapping]] = ..., diagnostics: _Optional[_Iterable[_Union[_common_pb2.Diagnostic, _Mapping]]] = ..., ok: _Optional[bool] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("request_id", "spec")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    spec: TrainingSpec
    def __init__(self, request_id: _Optional[str] = ..., spec: _Optional[_Union[TrainingSpec, _Mapping]] = ...) -> None: ...

class StartTrainingResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class Savepoint(_message.Message):
    __slots__ = ("step", "embedding", "manifest", "loss", "create_time")
    STEP_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    step: int
    embedding: _common_pb2.StorageRef
    manifest: _common_pb2.StorageRef
    loss: float
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, step: _Optional[int] = ..., embedding: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., manifest: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., loss: _Optional[float] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PreviewItem(_message.Message):
    __slots__ = ("prompt", "seed", "weight", "image")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    seed: int
    weight: float
    image: _common_pb2.ImageData
    def __init__(self, prompt: _Optional[str] = ..., seed: _Optional[int] = ..., weight: _Optional[float] = ..., image: _Optional[_Union[_common_pb2.ImageData, _Mapping]] = ...) -> None: ...

class PreviewSet(_message.Message):
    __slots__ = ("step", "items", "manifest")
    STEP_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    step: int
    items: _containers.RepeatedCompositeFieldContainer[PreviewItem]
    manifest: _common_pb2.StorageRef
    def __init__(self, step: _Optional[int] = ..., items: _Optional[_Iterable[_Union[PreviewItem, _Mapping]]] = ..., manifest: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "request_id", "state", "failure", "spec", "model", "step", "max_steps", "loss", "learning_rate", "samples_per_second", "eta", "output", "latest_savepoint", "latest_preview", "last_sequence", "create_time", "start_time", "update_time", "end_time")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LATEST_SAVEPOINT_FIELD_NUMBER: _ClassVar[int]
    LATEST_PREVIEW_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    request_id: str
    state: JobState
    failure: _common_pb2.Diagnostic
    spec: TrainingSpec
    model: _common_pb2.ModelInfo
    step: int
    max_steps: int
    loss: float
    learning_rate: float
    samples_per_second: float
    eta: _duration_pb2.Duration
    output: _common_pb2.StorageRef
    latest_savepoint: Savepoint
    latest_preview: PreviewSet
    last_sequence: int
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., request_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., failure: _Optional[_Union[_common_pb2.Diagnostic, _Mapping]] = ..., spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., step: _Optional[int] = ..., max_steps: _Optional[int] = ..., loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., samples_per_second: _Optional[float] = ..., eta: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., output: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., latest_savepoint: _Optional[_Union[Savepoint, _Mapping]] = ..., latest_preview: _Optional[_Union[PreviewSet, _Mapping]] = ..., last_sequence: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "states")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    states: _containers.RepeatedScalarFieldContainer[JobState]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[JobState, str]]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class StateChanged(_message.Message):
    __slots__ = ("previous", "current", "reason")
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    previous: JobState
    current: JobState
    reason: _common_pb2.Diagnostic
    def __init__(self, previous: _Optional[_Union[JobState, str]] = ..., current: _Optional[_Union[JobState, str]] = ..., reason: _Optional[_Union[_common_pb2.Diagnostic, _Mapping]] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("step", "max_steps", "epoch", "epoch_step", "loss", "learning_rate", "samples_per_second", "eta", "embedding_norm", "prompt")
    STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCH_STEP_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NORM_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    step: int
    max_steps: int
    epoch: int
    epoch_step: int
    loss: float
    learning_rate: float
    samples_per_second: float
    eta: _duration_pb2.Duration
    embedding_norm: float
    prompt: str
    def __init__(self, step: _Optional[int] = ..., max_steps: _Optional[int] = ..., epoch: _Optional[int] = ..., epoch_step: _Optional[int] = ..., loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., samples_per_second: _Optional[float] = ..., eta: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., embedding_norm: _Optional[float] = ..., prompt: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("sequence", "time", "state_changed", "progress", "savepoint_saved", "preview_rendered", "notice")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SAVEPOINT_SAVED_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_RENDERED_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    state_changed: StateChanged
    progress: StepProgress
    savepoint_saved: Savepoint
    preview_rendered: PreviewSet
    notice: _common_pb2.Diagnostic
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_changed: _Optional[_Union[StateChanged, _Mapping]] = ..., progress: _Optional[_Union[StepProgress, _Mapping]] = ..., savepoint_saved: _Optional[_Union[Savepoint, _Mapping]] = ..., preview_rendered: _Optional[_Union[PreviewSet, _Mapping]] = ..., notice: _Optional[_Union[_common_pb2.Diagnostic, _Mapping]] = ...) -> None: ...

class PauseJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class PauseJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ResumeJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ResumeJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ExportEmbeddingRequest(_message.Message):
    __slots__ = ("job_id", "embedding", "step", "format", "name", "destination", "include_data")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DATA_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    embedding: _common_pb2.StorageRef
    step: int
    format: EmbeddingFormat
    name: str
    destination: _common_pb2.StorageRef
    include_data: bool
    def __init__(self, job_id: _Optional[str] = ..., embedding: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., step: _Optional[int] = ..., format: _Optional[_Union[EmbeddingFormat, str]] = ..., name: _Optional[str] = ..., destination: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., include_data: _Optional[bool] = ...) -> None: ...

class ExportedFile(_message.Message):
    __slots__ = ("file", "sha256", "text_encoder", "data")
    FILE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TEXT_ENCODER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file: _common_pb2.StorageRef
    sha256: str
    text_encoder: str
    data: bytes
    def __init__(self, file: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., sha256: _Optional[str] = ..., text_encoder: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ExportEmbeddingResponse(_message.Message):
    __slots__ = ("embedding", "files")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    embedding: Embedding
    files: _containers.RepeatedCompositeFieldContainer[ExportedFile]
    def __init__(self, embedding: _Optional[_Union[Embedding, _Mapping]] = ..., files: _Optional[_Iterable[_Union[ExportedFile, _Mapping]]] = ...) -> None: ...
