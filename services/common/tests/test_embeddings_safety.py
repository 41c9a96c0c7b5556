"""Files that must be refused, each with a stable reason and a message naming the file; planted pickles never run."""

from __future__ import annotations

import base64
import io
import os
import pickle

import grpc
import pytest
import safetensors.torch
import torch
from PIL import Image, PngImagePlugin

from services.common.embeddings import (
    MAX_EMBEDDING_BYTES,
    Embedding,
    EmbeddingError,
    EmbeddingFormat,
    InvalidEmbeddingTensor,
    MultipleEmbeddings,
    NotAnEmbedding,
    UnreadableEmbedding,
    UnsafePickle,
    read_embedding,
    write_embedding,
)


class PlantedPayload:
    """What a malicious .pt carries: unpickling it calls os.mkdir(marker). Harmless, and visible if it ran."""

    def __init__(self, marker: os.PathLike) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _png(text: str | None) -> bytes:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("sd-ti-embedding", text)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 90, 90)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def _refused(data: bytes, error: type[EmbeddingError], match: str, filename: str = "bad.pt") -> EmbeddingError:
    with pytest.raises(error, match=match) as caught:
        read_embedding(data, filename=filename)
    refused = caught.value
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and filename in str(refused)
    assert refused.metadata["filename"] == filename
    return refused


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: _torch_bytes({"string_to_param": {"*": p}, "name": "anna"}), id="torch-zip-a1111"),
        pytest.param(lambda p: pickle.dumps(p, protocol=2), id="raw-pickle-2"),
        pytest.param(lambda p: pickle.dumps(p, protocol=4), id="raw-pickle-4"),
    ],
)
def test_planted_pickle_is_refused_and_nothing_runs(tmp_path, make):
    control = tmp_path / "control"
    # The payload is live: an ordinary unpickle runs it. torch's format needs torch.load to reach the pickle.
    live = make(PlantedPayload(control))
    if live.startswith(b"PK"):
        torch.load(io.BytesIO(live), weights_only=False)
    else:
        pickle.loads(live)
    assert control.is_dir()

    marker = tmp_path / "marker"
    error = _refused(make(PlantedPayload(marker)), UnsafePickle, "Nothing in it was run", filename="anna.pt")
    assert error.reason == "UNSAFE_PICKLE"
    assert not marker.exists()


def test_unsafe_pickle_names_what_it_asked_for(tmp_path):
    error = _refused(_torch_bytes({"x": PlantedPayload(tmp_path / "m")}), UnsafePickle, "asks for `posix.mkdir`")
    assert "weights_only=False" not in str(error)  # never advise the unsafe load


def test_pickled_module_objects_are_refused_not_loaded():
    # A1111 files from torch 1.11 kept string_to_param as a ParameterDict, a module class a safe load refuses.
    params = torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.zeros(1, 32))})
    _refused(_torch_bytes({"string_to_param": params, "name": "old"}), UnsafePickle, "ParameterDict")


@pytest.mark.parametrize("container", ["pt", "safetensors"])
@pytest.mark.parametrize(
    ("tensor", "match"),
    [
        (torch.arange(64, dtype=torch.int64).reshape(2, 32), "int64 values; embedding vectors are float"),
        (torch.ones(2, 32, dtype=torch.bool), "bool values"),
        (torch.tensor([[1.0, float("nan")] * 16]), "NaN or infinite"),
        (torch.tensor([[float("inf")] * 32]), "NaN or infinite"),
        (torch.tensor([[1e39] * 32], dtype=torch.float64), "beyond float32"),
        (torch.zeros(1, 2, 32), r"shape \[1, 2, 32\]; an embedding is \[vectors, width\]"),
        (torch.zeros(0, 32), "0 vectors"),
        (torch.zeros(76, 32), "76 vectors; an embedding has 1 to 75"),
        (torch.zeros(1, 5000), "5000 wide"),
    ],
)
def test_bad_tensors_are_refused(container, tensor, match):
    data = (
        _torch_bytes({"string_to_param": {"*": tensor}})
        if container == "pt"
        else safetensors.torch.save({"emb_params": tensor})
    )
    error = _refused(data, InvalidEmbeddingTensor, match, filename=f"anna.{container}")
    assert error.reason == "INVALID_EMBEDDING_TENSOR"


def test_sparse_tensor_is_refused():
    _refused(_torch_bytes({"string_to_param": {"*": torch.eye(32).to_sparse()}}), InvalidEmbeddingTensor, "sparse")


def test_sdxl_pair_with_different_vector_counts_is_refused():
    data = safetensors.torch.save({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(3, 1280)})
    _refused(data, InvalidEmbeddingTensor, "2 clip_l vectors but 3 clip_g", filename="x.safetensors")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "is empty"),
        (b"\x00" * (MAX_EMBEDDING_BYTES + 1), "MiB; .* a model checkpoint or a LoRA"),
        (b"hello, this is not an embedding at all", "not a safetensors, PyTorch .* or PNG file"),
        (b"PK\x03\x04" + os.urandom(200), "not a readable PyTorch file"),
        (pickle.dumps({"string_to_param": 1}, protocol=2), "not a readable PyTorch file"),  # a pickle, not torch's
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable PNG"),
    ],
)
def test_empty_huge_garbage_and_damaged_files_are_unreadable(data, match):
    assert _refused(data, UnreadableEmbedding, match).reason == "UNREADABLE_EMBEDDING"


def _good_safetensors() -> bytes:
    return write_embedding(Embedding("anna", (torch.ones(3, 32),)), EmbeddingFormat.SAFETENSORS)


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        (lambda d: d[:-10], "truncated"),  # tensor data cut short
        (lambda d: d[:40], "truncated"),  # inside the header
        (lambda d: d[:5], "fewer than a safetensors header|not a safetensors"),
    ],
)
def test_truncated_safetensors_is_unreadable(cut, match):
    _refused(cut(_good_safetensors()), UnreadableEmbedding, match, filename="anna.safetensors")


def test_truncated_pt_is_unreadable():
    data = write_embedding(Embedding("anna", (torch.ones(3, 32),)), EmbeddingFormat.A1111_PT)
    _refused(data[: len(data) // 2], UnreadableEmbedding, "truncated")


def test_safetensors_with_broken_header_is_unreadable():
    good = _good_safetensors()
    broken = (
        good[:8]
        + b"{"
        + b"x" * (int.from_bytes(good[:8], "little") - 1)
        + good[8 + int.from_bytes(good[:8], "little") :]
    )
    _refused(broken, UnreadableEmbedding, "header is not JSON", filename="anna.safetensors")


def test_two_entries_in_string_to_param_break_a1111s_single_entry_rule():
    data = _torch_bytes({"string_to_param": {"*": torch.zeros(1, 32), "+": torch.zeros(1, 32)}, "name": "two"})
    error = _refused(data, MultipleEmbeddings, "2 entries in string_to_param .* exactly one entry")
    assert error.reason == "MULTIPLE_EMBEDDINGS"


def test_several_unrelated_tokens_are_multiple_embeddings():
    data = safetensors.torch.save({"<cat>": torch.zeros(1, 32), "<dog>": torch.zeros(1, 32)})
    _refused(data, MultipleEmbeddings, "2 separate tokens", filename="concepts.safetensors")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            safetensors.torch.save(
                {f"lora_te_text_model_encoder_layers_{i}.alpha": torch.zeros(1, 4) for i in range(3)}
            ),
            "LoRA or model checkpoint",
        ),
        (_torch_bytes({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}), "none of the embedding layouts"),
        (_torch_bytes([torch.zeros(1, 32)]), "holds a list, not an embedding"),
        (_torch_bytes({"string_to_param": {}}), "string_to_param is empty"),
        (safetensors.torch.save({"emb_params": torch.zeros(1, 32), "extra": torch.zeros(1)}), "unexpected keys"),
        (_png(None), "PNG without an embedding"),
    ],
)
def test_files_without_an_embedding_say_so(data, match):
    assert _refused(data, NotAnEmbedding, match).reason == "NOT_AN_EMBEDDING"


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("!!!not base64!!!", UnreadableEmbedding, "not base64|not JSON"),
        (base64.b64encode(b"{not json").decode(), UnreadableEmbedding, "not JSON"),
        (
            base64.b64encode(b'{"string_to_param": {"*": {"TORCHTENSOR": [["a", "b"]]}}}').decode(),
            InvalidEmbeddingTensor,
            "not a rectangular list of numbers",
        ),
        (
            base64.b64encode(b'{"string_to_param": {"*": {"TORCHTENSOR": [[1.0, 2.0], [3.0]]}}}').decode(),
            InvalidEmbeddingTensor,
            "not a rectangular list of numbers",
        ),
    ],
)
def test_damaged_png_chunks_are_refused(text, error, match):
    _refused(_png(text), error, match, filename="anna.png")
