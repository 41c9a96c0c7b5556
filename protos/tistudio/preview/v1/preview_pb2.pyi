from tistudio.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Emphasis(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMPHASIS_UNSPECIFIED: _ClassVar[Emphasis]
    EMPHASIS_ORIGINAL: _ClassVar[Emphasis]
    EMPHASIS_NO_NORM: _ClassVar[Emphasis]
    EMPHASIS_NONE: _ClassVar[Emphasis]

class SheetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHEET_KIND_UNSPECIFIED: _ClassVar[SheetKind]
    SHEET_KIND_PROGRESS: _ClassVar[SheetKind]
    SHEET_KIND_FINAL_EXAM: _ClassVar[SheetKind]

class SheetColumns(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHEET_COLUMNS_UNSPECIFIED: _ClassVar[SheetColumns]
    SHEET_COLUMNS_SEEDS: _ClassVar[SheetColumns]
    SHEET_COLUMNS_WEIGHTS: _ClassVar[SheetColumns]
EMPHASIS_UNSPECIFIED: Emphasis
EMPHASIS_ORIGINAL: Emphasis
EMPHASIS_NO_NORM: Emphasis
EMPHASIS_NONE: Emphasis
SHEET_KIND_UNSPECIFIED: SheetKind
SHEET_KIND_PROGRESS: SheetKind
SHEET_KIND_FINAL_EXAM: SheetKind
SHEET_COLUMNS_UNSPECIFIED: SheetColumns
SHEET_COLUMNS_SEEDS: SheetColumns
SHEET_COLUMNS_WEIGHTS: SheetColumns

class EmbeddingRef(_message.Message):
    __slots__ = ("file", "trigger")
    FILE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    file: _common_pb2.StorageRef
    trigger: str
    def __init__(self, file: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., trigger: _Optional[str] = ...) -> None: ...

class SamplingSettings(_message.Message):
    __slots__ = ("steps", "cfg_scale", "sampler", "width", "height", "emphasis")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CFG_SCALE_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    EMPHASIS_FIELD_NUMBER: _ClassVar[int]
    steps: int
    cfg_scale: float
    sampler: _common_pb2.Sampler
    width: int
    height: int
    emphasis: Emphasis
    def __init__(self, steps: _Optional[int] = ..., cfg_scale: _Optional[float] = ..., sampler: _Optional[_Union[_common_pb2.Sampler, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., emphasis: _Optional[_Union[Emphasis, str]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "prompt", "negative_prompt", "embeddings", "seed", "sampling", "batch_size", "output", "include_data")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DATA_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    prompt: str
    negative_prompt: str
    embeddings: _containers.RepeatedCompositeFieldContainer[EmbeddingRef]
    seed: int
    sampling: SamplingSettings
    batch_size: int
    output: _common_pb2.StorageRef
    include_data: bool
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., embeddings: _Optional[_Iterable[_Union[EmbeddingRef, _Mapping]]] = ..., seed: _Optional[int] = ..., sampling: _Optional[_Union[SamplingSettings, _Mapping]] = ..., batch_size: _Optional[int] = ..., output: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., include_data: _Optional[bool] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("image", "seed", "infotext", "stored")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    INFOTEXT_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageData
    seed: int
    infotext: str
    stored: _common_pb2.StorageRef
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageData, _Mapping]] = ..., seed: _Optional[int] = ..., infotext: _Optional[str] = ..., stored: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("images", "model")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    model: _common_pb2.ModelInfo
    def __init__(self, images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class RenderPreviewsRequest(_message.Message):
    __slots__ = ("model", "embedding", "prompts", "negative_prompt", "seeds", "weights", "sampling", "output", "step", "job_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    embedding: EmbeddingRef
    prompts: _containers.RepeatedScalarFieldContainer[str]
    negative_prompt: str
    seeds: _containers.RepeatedScalarFieldContainer[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    sampling: SamplingSettings
    output: _common_pb2.StorageRef
    step: int
    job_id: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., embedding: _Optional[_Union[EmbeddingRef, _Mapping]] = ..., prompts: _Optional[_Iterable[str]] = ..., negative_prompt: _Optional[str] = ..., seeds: _Optional[_Iterable[int]] = ..., weights: _Optional[_Iterable[float]] = ..., sampling: _Optional[_Union[SamplingSettings, _Mapping]] = ..., output: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., step: _Optional[int] = ..., job_id: _Optional[str] = ...) -> None: ...

class PreviewImage(_message.Message):
    __slots__ = ("prompt_index", "seed", "weight", "image")
    PROMPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    prompt_index: int
    seed: int
    weight: float
    image: GeneratedImage
    def __init__(self, prompt_index: _Optional[int] = ..., seed: _Optional[int] = ..., weight: _Optional[float] = ..., image: _Optional[_Union[GeneratedImage, _Mapping]] = ...) -> None: ...

class RenderPreviewsResponse(_message.Message):
    __slots__ = ("images", "manifest")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[PreviewImage]
    manifest: _common_pb2.StorageRef
    def __init__(self, images: _Optional[_Iterable[_Union[PreviewImage, _Mapping]]] = ..., manifest: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ...) -> None: ...

class ContactSheetRequest(_message.Message):
    __slots__ = ("kind", "job_output", "prompt_index", "columns", "dataset", "model", "embedding", "template", "seed", "sampling", "output", "cell_size", "include_data")
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_INDEX_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CELL_SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DATA_FIELD_NUMBER: _ClassVar[int]
    kind: SheetKind
    job_output: _common_pb2.StorageRef
    prompt_index: int
    columns: SheetColumns
    dataset: _common_pb2.StorageRef
    model: _common_pb2.ModelRef
    embedding: EmbeddingRef
    template: str
    seed: int
    sampling: SamplingSettings
    output: _common_pb2.StorageRef
    cell_size: int
    include_data: bool
    def __init__(self, kind: _Optional[_Union[SheetKind, str]] = ..., job_output: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., prompt_index: _Optional[int] = ..., columns: _Optional[_Union[SheetColumns, str]] = ..., dataset: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., embedding: _Optional[_Union[EmbeddingRef, _Mapping]] = ..., template: _Optional[str] = ..., seed: _Optional[int] = ..., sampling: _Optional[_Union[SamplingSettings, _Mapping]] = ..., output: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., cell_size: _Optional[int] = ..., include_data: _Optional[bool] = ...) -> None: ...

class ContactSheetResponse(_message.Message):
    __slots__ = ("sheet", "rows", "columns", "stored")
    SHEET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    sheet: _common_pb2.ImageData
    rows: int
    columns: int
    stored: _common_pb2.StorageRef
    def __init__(self, sheet: _Optional[_Union[_common_pb2.ImageData, _Mapping]] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ..., stored: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model", "clip_model", "savepoints", "dataset", "edit_prompts", "seeds", "sampling", "editability_margin", "output")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLIP_MODEL_FIELD_NUMBER: _ClassVar[int]
    SAVEPOINTS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EDIT_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    EDITABILITY_MARGIN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    clip_model: _common_pb2.ModelRef
    savepoints: _containers.RepeatedCompositeFieldContainer[EmbeddingRef]
    dataset: _common_pb2.StorageRef
    edit_prompts: _containers.RepeatedScalarFieldContainer[str]
    seeds: _containers.RepeatedScalarFieldContainer[int]
    sampling: SamplingSettings
    editability_margin: float
    output: _common_pb2.StorageRef
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., clip_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., savepoints: _Optional[_Iterable[_Union[EmbeddingRef, _Mapping]]] = ..., dataset: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., edit_prompts: _Optional[_Iterable[str]] = ..., seeds: _Optional[_Iterable[int]] = ..., sampling: _Optional[_Union[SamplingSettings, _Mapping]] = ..., editability_margin: _Optional[float] = ..., output: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ...) -> None: ...

class SavepointScore(_message.Message):
    __slots__ = ("savepoint", "step", "fidelity", "editability")
    SAVEPOINT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    FIDELITY_FIELD_NUMBER: _ClassVar[int]
    EDITABILITY_FIELD_NUMBER: _ClassVar[int]
    savepoint: EmbeddingRef
    step: int
    fidelity: float
    editability: float
    def __init__(self, savepoint: _Optional[_Union[EmbeddingRef, _Mapping]] = ..., step: _Optional[int] = ..., fidelity: _Optional[float] = ..., editability: _Optional[float] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("scores", "recommended_index", "table", "chart", "chart_stored")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_INDEX_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    CHART_FIELD_NUMBER: _ClassVar[int]
    CHART_STORED_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[SavepointScore]
    recommended_index: int
    table: _common_pb2.StorageRef
    chart: _common_pb2.ImageData
    chart_stored: _common_pb2.StorageRef
    def __init__(self, scores: _Optional[_Iterable[_Union[SavepointScore, _Mapping]]] = ..., recommended_index: _Optional[int] = ..., table: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., chart: _Optional[_Union[_common_pb2.ImageData, _Mapping]] = ..., chart_stored: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ...) -> None: ...
