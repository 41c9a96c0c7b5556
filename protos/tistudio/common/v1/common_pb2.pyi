from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_FAMILY_UNSPECIFIED: _ClassVar[ModelFamily]
    MODEL_FAMILY_SD1: _ClassVar[ModelFamily]
    MODEL_FAMILY_SD2_512: _ClassVar[ModelFamily]
    MODEL_FAMILY_SD2_768: _ClassVar[ModelFamily]
    MODEL_FAMILY_SDXL: _ClassVar[ModelFamily]

class Sampler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLER_UNSPECIFIED: _ClassVar[Sampler]
    SAMPLER_EULER_A: _ClassVar[Sampler]
    SAMPLER_EULER: _ClassVar[Sampler]
    SAMPLER_DPMPP_2M: _ClassVar[Sampler]
    SAMPLER_DPMPP_2M_KARRAS: _ClassVar[Sampler]
    SAMPLER_DDIM: _ClassVar[Sampler]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_ERROR: _ClassVar[Severity]
MODEL_FAMILY_UNSPECIFIED: ModelFamily
MODEL_FAMILY_SD1: ModelFamily
MODEL_FAMILY_SD2_512: ModelFamily
MODEL_FAMILY_SD2_768: ModelFamily
MODEL_FAMILY_SDXL: ModelFamily
SAMPLER_UNSPECIFIED: Sampler
SAMPLER_EULER_A: Sampler
SAMPLER_EULER: Sampler
SAMPLER_DPMPP_2M: Sampler
SAMPLER_DPMPP_2M_KARRAS: Sampler
SAMPLER_DDIM: Sampler
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_ERROR: Severity

class StorageRef(_message.Message):
    __slots__ = ("key", "store_url")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STORE_URL_FIELD_NUMBER: _ClassVar[int]
    key: str
    store_url: str
    def __init__(self, key: _Optional[str] = ..., store_url: _Optional[str] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("reference", "config_reference")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    config_reference: str
    def __init__(self, reference: _Optional[str] = ..., config_reference: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("reference", "name", "family", "sha256", "short_hash", "prediction_type", "embedding_dims")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SHORT_HASH_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIMS_FIELD_NUMBER: _ClassVar[int]
    reference: str
    name: str
    family: ModelFamily
    sha256: str
    short_hash: str
    prediction_type: str
    embedding_dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, reference: _Optional[str] = ..., name: _Optional[str] = ..., family: _Optional[_Union[ModelFamily, str]] = ..., sha256: _Optional[str] = ..., short_hash: _Optional[str] = ..., prediction_type: _Optional[str] = ..., embedding_dims: _Optional[_Iterable[int]] = ...) -> None: ...

class ImageData(_message.Message):
    __slots__ = ("ref", "inline_data", "media_type", "width", "height")
    REF_FIELD_NUMBER: _ClassVar[int]
    INLINE_DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ref: StorageRef
    inline_data: bytes
    media_type: str
    width: int
    height: int
    def __init__(self, ref: _Optional[_Union[StorageRef, _Mapping]] = ..., inline_data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("completed", "total")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    completed: int
    total: int
    def __init__(self, completed: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class Diagnostic(_message.Message):
    __slots__ = ("severity", "code", "message", "suggestion", "field", "key")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUGGESTION_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    severity: Severity
    code: str
    message: str
    suggestion: str
    field: str
    key: str
    def __init__(self, severity: _Optional[_Union[Severity, str]] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., suggestion: _Optional[str] = ..., field: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...
