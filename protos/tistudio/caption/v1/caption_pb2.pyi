from tistudio.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CropMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CROP_MODE_UNSPECIFIED: _ClassVar[CropMode]
    CROP_MODE_CENTER: _ClassVar[CropMode]
    CROP_MODE_FOCAL_POINT: _ClassVar[CropMode]

class ExistingCaptionAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXISTING_CAPTION_ACTION_UNSPECIFIED: _ClassVar[ExistingCaptionAction]
    EXISTING_CAPTION_ACTION_IGNORE: _ClassVar[ExistingCaptionAction]
    EXISTING_CAPTION_ACTION_COPY: _ClassVar[ExistingCaptionAction]
    EXISTING_CAPTION_ACTION_PREPEND: _ClassVar[ExistingCaptionAction]
    EXISTING_CAPTION_ACTION_APPEND: _ClassVar[ExistingCaptionAction]

class ImageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_STATUS_UNSPECIFIED: _ClassVar[ImageStatus]
    IMAGE_STATUS_KEPT: _ClassVar[ImageStatus]
    IMAGE_STATUS_SKIPPED: _ClassVar[ImageStatus]

class ExistingCaptionPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXISTING_CAPTION_POLICY_UNSPECIFIED: _ClassVar[ExistingCaptionPolicy]
    EXISTING_CAPTION_POLICY_SKIP: _ClassVar[ExistingCaptionPolicy]
    EXISTING_CAPTION_POLICY_OVERWRITE: _ClassVar[ExistingCaptionPolicy]
    EXISTING_CAPTION_POLICY_PREPEND: _ClassVar[ExistingCaptionPolicy]
    EXISTING_CAPTION_POLICY_APPEND: _ClassVar[ExistingCaptionPolicy]

class CaptionAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPTION_ACTION_UNSPECIFIED: _ClassVar[CaptionAction]
    CAPTION_ACTION_WRITTEN: _ClassVar[CaptionAction]
    CAPTION_ACTION_SKIPPED_EXISTING: _ClassVar[CaptionAction]
    CAPTION_ACTION_FAILED: _ClassVar[CaptionAction]
CROP_MODE_UNSPECIFIED: CropMode
CROP_MODE_CENTER: CropMode
CROP_MODE_FOCAL_POINT: CropMode
EXISTING_CAPTION_ACTION_UNSPECIFIED: ExistingCaptionAction
EXISTING_CAPTION_ACTION_IGNORE: ExistingCaptionAction
EXISTING_CAPTION_ACTION_COPY: ExistingCaptionAction
EXISTING_CAPTION_ACTION_PREPEND: ExistingCaptionAction
EXISTING_CAPTION_ACTION_APPEND: ExistingCaptionAction
IMAGE_STATUS_UNSPECIFIED: ImageStatus
IMAGE_STATUS_KEPT: ImageStatus
IMAGE_STATUS_SKIPPED: ImageStatus
EXISTING_CAPTION_POLICY_UNSPECIFIED: ExistingCaptionPolicy
EXISTING_CAPTION_POLICY_SKIP: ExistingCaptionPolicy
EXISTING_CAPTION_POLICY_OVERWRITE: ExistingCaptionPolicy
EXISTING_CAPTION_POLICY_PREPEND: ExistingCaptionPolicy
EXISTING_CAPTION_POLICY_APPEND: ExistingCaptionPolicy
CAPTION_ACTION_UNSPECIFIED: CaptionAction
CAPTION_ACTION_WRITTEN: CaptionAction
CAPTION_ACTION_SKIPPED_EXISTING: CaptionAction
CAPTION_ACTION_FAILED: CaptionAction

class FocalPointWeights(_message.Message):
    __slots__ = ("face", "entropy", "edges")
    FACE_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    face: float
    entropy: float
    edges: float
    def __init__(self, face: _Optional[float] = ..., entropy: _Optional[float] = ..., edges: _Optional[float] = ...) -> None: ...

class SplitOptions(_message.Message):
    __slots__ = ("enabled", "threshold", "overlap")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    threshold: float
    overlap: float
    def __init__(self, enabled: _Optional[bool] = ..., threshold: _Optional[float] = ..., overlap: _Optional[float] = ...) -> None: ...

class PreprocessOptions(_message.Message):
    __slots__ = ("size", "family", "crop", "focal_point", "flip_copies", "split", "existing_caption", "keep_alpha", "max_file_bytes", "max_pixels", "caption", "caption_options", "min_side")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    FOCAL_POINT_FIELD_NUMBER: _ClassVar[int]
    FLIP_COPIES_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    EXISTING_CAPTION_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALPHA_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    CAPTION_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_SIDE_FIELD_NUMBER: _ClassVar[int]
    size: int
    family: _common_pb2.ModelFamily
    crop: CropMode
    focal_point: FocalPointWeights
    flip_copies: bool
    split: SplitOptions
    existing_caption: ExistingCaptionAction
    keep_alpha: bool
    max_file_bytes: int
    max_pixels: int
    caption: bool
    caption_options: CaptionOptions
    min_side: int
    def __init__(self, size: _Optional[int] = ..., family: _Optional[_Union[_common_pb2.ModelFamily, str]] = ..., crop: _Optional[_Union[CropMode, str]] = ..., focal_point: _Optional[_Union[FocalPointWeights, _Mapping]] = ..., flip_copies: _Optional[bool] = ..., split: _Optional[_Union[SplitOptions, _Mapping]] = ..., existing_caption: _Optional[_Union[ExistingCaptionAction, str]] = ..., keep_alpha: _Optional[bool] = ..., max_file_bytes: _Optional[int] = ..., max_pixels: _Optional[int] = ..., caption: _Optional[bool] = ..., caption_options: _Optional[_Union[CaptionOptions, _Mapping]] = ..., min_side: _Optional[int] = ...) -> None: ...

class PreprocessRequest(_message.Message):
    __slots__ = ("source", "destination", "options")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    source: _common_pb2.StorageRef
    destination: _common_pb2.StorageRef
    options: PreprocessOptions
    def __init__(self, source: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., destination: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., options: _Optional[_Union[PreprocessOptions, _Mapping]] = ...) -> None: ...

class ImageOutcome(_message.Message):
    __slots__ = ("source_key", "status", "reason", "derived_keys", "notes", "caption")
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DERIVED_KEYS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    source_key: str
    status: ImageStatus
    reason: _common_pb2.Diagnostic
    derived_keys: _containers.RepeatedScalarFieldContainer[str]
    notes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Diagnostic]
    caption: CaptionResult
    def __init__(self, source_key: _Optional[str] = ..., status: _Optional[_Union[ImageStatus, str]] = ..., reason: _Optional[_Union[_common_pb2.Diagnostic, _Mapping]] = ..., derived_keys: _Optional[_Iterable[str]] = ..., notes: _Optional[_Iterable[_Union[_common_pb2.Diagnostic, _Mapping]]] = ..., caption: _Optional[_Union[CaptionResult, _Mapping]] = ...) -> None: ...

class PreprocessSummary(_message.Message):
    __slots__ = ("dataset", "kept", "skipped", "images_written")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.StorageRef
    kept: int
    skipped: int
    images_written: int
    def __init__(self, dataset: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., kept: _Optional[int] = ..., skipped: _Optional[int] = ..., images_written: _Optional[int] = ...) -> None: ...

class PreprocessResponse(_message.Message):
    __slots__ = ("progress", "image", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    image: ImageOutcome
    summary: PreprocessSummary
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., image: _Optional[_Union[ImageOutcome, _Mapping]] = ..., summary: _Optional[_Union[PreprocessSummary, _Mapping]] = ...) -> None: ...

class HygieneOptions(_message.Message):
    __slots__ = ("enabled", "class_phrase", "subject_variants", "collapse_repeats", "drop_artifacts", "comma_phrases")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CLASS_PHRASE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    COLLAPSE_REPEATS_FIELD_NUMBER: _ClassVar[int]
    DROP_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    COMMA_PHRASES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    class_phrase: str
    subject_variants: _containers.RepeatedScalarFieldContainer[str]
    collapse_repeats: bool
    drop_artifacts: bool
    comma_phrases: bool
    def __init__(self, enabled: _Optional[bool] = ..., class_phrase: _Optional[str] = ..., subject_variants: _Optional[_Iterable[str]] = ..., collapse_repeats: _Optional[bool] = ..., drop_artifacts: _Optional[bool] = ..., comma_phrases: _Optional[bool] = ...) -> None: ...

class CaptionOptions(_message.Message):
    __slots__ = ("model", "num_beams", "min_length", "max_length", "sample", "top_p", "seed", "prefix", "repetition_penalty", "hygiene")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NUM_BEAMS_FIELD_NUMBER: _ClassVar[int]
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    REPETITION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    HYGIENE_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    num_beams: int
    min_length: int
    max_length: int
    sample: bool
    top_p: float
    seed: int
    prefix: str
    repetition_penalty: float
    hygiene: HygieneOptions
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., num_beams: _Optional[int] = ..., min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., sample: _Optional[bool] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ..., prefix: _Optional[str] = ..., repetition_penalty: _Optional[float] = ..., hygiene: _Optional[_Union[HygieneOptions, _Mapping]] = ...) -> None: ...

class CaptionRequest(_message.Message):
    __slots__ = ("images", "options")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageData]
    options: CaptionOptions
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.ImageData, _Mapping]]] = ..., options: _Optional[_Union[CaptionOptions, _Mapping]] = ...) -> None: ...

class CaptionEdit(_message.Message):
    __slots__ = ("rule", "before", "after")
    RULE_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    rule: str
    before: str
    after: str
    def __init__(self, rule: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class CaptionResult(_message.Message):
    __slots__ = ("caption", "raw_caption", "edits")
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    RAW_CAPTION_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    caption: str
    raw_caption: str
    edits: _containers.RepeatedCompositeFieldContainer[CaptionEdit]
    def __init__(self, caption: _Optional[str] = ..., raw_caption: _Optional[str] = ..., edits: _Optional[_Iterable[_Union[CaptionEdit, _Mapping]]] = ...) -> None: ...

class CaptionResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CaptionResult]
    model: _common_pb2.ModelInfo
    def __init__(self, results: _Optional[_Iterable[_Union[CaptionResult, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class CaptionDatasetRequest(_message.Message):
    __slots__ = ("dataset", "options", "policy")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.StorageRef
    options: CaptionOptions
    policy: ExistingCaptionPolicy
    def __init__(self, dataset: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., options: _Optional[_Union[CaptionOptions, _Mapping]] = ..., policy: _Optional[_Union[ExistingCaptionPolicy, str]] = ...) -> None: ...

class CaptionedImage(_message.Message):
    __slots__ = ("image_key", "caption_key", "action", "result", "error")
    IMAGE_KEY_FIELD_NUMBER: _ClassVar[int]
    CAPTION_KEY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    image_key: str
    caption_key: str
    action: CaptionAction
    result: CaptionResult
    error: _common_pb2.Diagnostic
    def __init__(self, image_key: _Optional[str] = ..., caption_key: _Optional[str] = ..., action: _Optional[_Union[CaptionAction, str]] = ..., result: _Optional[_Union[CaptionResult, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.Diagnostic, _Mapping]] = ...) -> None: ...

class CaptionDatasetSummary(_message.Message):
    __slots__ = ("written", "skipped", "failed")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    written: int
    skipped: int
    failed: int
    def __init__(self, written: _Optional[int] = ..., skipped: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class CaptionDatasetResponse(_message.Message):
    __slots__ = ("progress", "image", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    image: CaptionedImage
    summary: CaptionDatasetSummary
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., image: _Optional[_Union[CaptionedImage, _Mapping]] = ..., summary: _Optional[_Union[CaptionDatasetSummary, _Mapping]] = ...) -> None: ...

class LintDatasetRequest(_message.Message):
    __slots__ = ("dataset", "embedding_name", "class_phrase", "template", "vectors_per_token", "training_size", "family", "write_report")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_NAME_FIELD_NUMBER: _ClassVar[int]
    CLASS_PHRASE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VECTORS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SIZE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    WRITE_REPORT_FIELD_NUMBER: _ClassVar[int]
    dataset: _common_pb2.StorageRef
    embedding_name: str
    class_phrase: str
    template: str
    vectors_per_token: int
    training_size: int
    family: _common_pb2.ModelFamily
    write_report: bool
    def __init__(self, dataset: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ..., embedding_name: _Optional[str] = ..., class_phrase: _Optional[str] = ..., template: _Optional[str] = ..., vectors_per_token: _Optional[int] = ..., training_size: _Optional[int] = ..., family: _Optional[_Union[_common_pb2.ModelFamily, str]] = ..., write_report: _Optional[bool] = ...) -> None: ...

class BatchRecommendation(_message.Message):
    __slots__ = ("batch_size", "gradient_accumulation")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    gradient_accumulation: int
    def __init__(self, batch_size: _Optional[int] = ..., gradient_accumulation: _Optional[int] = ...) -> None: ...

class LintStats(_message.Message):
    __slots__ = ("images", "captioned", "min_side", "max_side", "max_prompt_tokens", "duplicate_groups")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CAPTIONED_FIELD_NUMBER: _ClassVar[int]
    MIN_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    images: int
    captioned: int
    min_side: int
    max_side: int
    max_prompt_tokens: int
    duplicate_groups: int
    def __init__(self, images: _Optional[int] = ..., captioned: _Optional[int] = ..., min_side: _Optional[int] = ..., max_side: _Optional[int] = ..., max_prompt_tokens: _Optional[int] = ..., duplicate_groups: _Optional[int] = ...) -> None: ...

class LintRecommendations(_message.Message):
    __slots__ = ("vectors_per_token_min", "vectors_per_token_max", "batching", "max_steps")
    VECTORS_PER_TOKEN_MIN_FIELD_NUMBER: _ClassVar[int]
    VECTORS_PER_TOKEN_MAX_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    vectors_per_token_min: int
    vectors_per_token_max: int
    batching: _containers.RepeatedCompositeFieldContainer[BatchRecommendation]
    max_steps: int
    def __init__(self, vectors_per_token_min: _Optional[int] = ..., vectors_per_token_max: _Optional[int] = ..., batching: _Optional[_Iterable[_Union[BatchRecommendation, _Mapping]]] = ..., max_steps: _Optional[int] = ...) -> None: ...

class LintDatasetResponse(_message.Message):
    __slots__ = ("findings", "stats", "recommendations", "report_text", "report")
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    REPORT_TEXT_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    findings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Diagnostic]
    stats: LintStats
    recommendations: LintRecommendations
    report_text: str
    report: _common_pb2.StorageRef
    def __init__(self, findings: _Optional[_Iterable[_Union[_common_pb2.Diagnostic, _Mapping]]] = ..., stats: _Optional[_Union[LintStats, _Mapping]] = ..., recommendations: _Optional[_Union[LintRecommendations, _Mapping]] = ..., report_text: _Optional[str] = ..., report: _Optional[_Union[_common_pb2.StorageRef, _Mapping]] = ...) -> None: ...
