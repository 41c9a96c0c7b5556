"""A1111 embeddings inside PNG images: the `sd-ti-embedding` text chunk (read and write) and the data blocks
A1111 paints at the image's sides (read only).

The chunk holds base64 of JSON of the `.pt` dict, each tensor written as `{"TORCHTENSOR": nested lists}` (A1111's
EmbeddingEncoder). The painted form is the same JSON, zlib-compressed, its low and high nibbles spread over two
blocks left and right of the picture (separated by black columns) and XORed with a fixed LCG stream; A1111 reads
it when the chunk is missing, e.g. after a site stripped text chunks.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import zlib

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from services.common.embeddings.errors import InvalidEmbeddingTensor, NotAnEmbedding, UnreadableEmbedding

__all__ = ["PNG_SIGNATURE", "CHUNK_KEY", "read_png", "write_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNK_KEY = "sd-ti-embedding"
_MAX_JSON = 64 * 1024 * 1024  # decompression cap for the painted form: far above any embedding's JSON
_MAX_PIXELS = 32 * 1024 * 1024  # A1111's previews are training-sized; a larger image is not decoded to look


def read_png(data: bytes, *, filename: str) -> dict[str, object]:
    """The A1111 dict stored in a PNG, tensors as float64 CPU tensors (JSON carries no dtype)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            text = image.info.get(CHUNK_KEY)
            decodable = image.width * image.height <= _MAX_PIXELS
            if text is None and decodable:
                image.load()  # text chunks written after the pixels appear only once the image is read
                text = getattr(image, "text", {}).get(CHUNK_KEY)
            painted = _extract_painted(image) if text is None and decodable else None
    except (
        OSError,
        ValueError,
        SyntaxError,
        zlib.error,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise UnreadableEmbedding(f"{filename} is not a readable PNG image ({exc})", filename=filename) from None
    if text is not None:
        try:
            payload = base64.b64decode(text)
        except (binascii.Error, ValueError) as exc:
            raise UnreadableEmbedding(
                f"{filename}: its {CHUNK_KEY} chunk is not base64 ({exc})", filename=filename
            ) from None
    elif painted is not None:
        payload = painted
    else:
        raise NotAnEmbedding(
            f"{filename} is a PNG without an embedding: no `{CHUNK_KEY}` text chunk and no A1111 data blocks at "
            "its sides. Use the embedding file itself, or the PNG A1111 saved under image_embeddings/",
            filename=filename,
        )
    return _decode_json(payload, filename=filename)


def write_png(data: dict[str, object], *, image: Image.Image | None = None) -> bytes:
    """A PNG carrying `data` (A1111's .pt dict) in a `sd-ti-embedding` tEXt chunk exactly as A1111 writes it.
    Without `image`, a small grey square stands in for A1111's captioned preview; the bytes are deterministic."""
    text = base64.b64encode(json.dumps(data, default=_tensor_to_json).encode())
    info = PngImagePlugin.PngInfo()
    info.add_text(CHUNK_KEY, text)
    picture = image if image is not None else Image.new("RGB", (64, 64), (128, 128, 128))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _tensor_to_json(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return {"TORCHTENSOR": value.detach().cpu().numpy().tolist()}
    raise TypeError(f"cannot write {type(value).__name__} into a {CHUNK_KEY} chunk")


def _decode_json(payload: bytes, *, filename: str) -> dict[str, object]:
    def hook(obj: dict[str, object]) -> object:
        if "TORCHTENSOR" in obj:
            # float64, not np.array's guess: a list of ints must not come back as an int tensor we would refuse
            # for a reason the user cannot see in the file, and nested junk fails here, before any tensor exists.
            return torch.from_numpy(np.asarray(obj["TORCHTENSOR"], dtype=np.float64))
        return obj

    try:
        text = payload.decode("utf-8")
        decoded = json.loads(text, object_hook=hook)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UnreadableEmbedding(f"{filename}: its embedding data is not JSON ({exc})", filename=filename) from None
    except (ValueError, TypeError):
        raise InvalidEmbeddingTensor(
            f"{filename}: a TORCHTENSOR in its embedding data is not a rectangular list of numbers", filename=filename
        ) from None
    if not isinstance(decoded, dict):
        raise NotAnEmbedding(f"{filename}: its embedding data is JSON but not an object", filename=filename)
    return decoded


def _lcg_mask(count: int) -> np.ndarray:
    """A1111's `xor_block` stream: an LCG (a=1664525, c=1013904223, m=2**32, seed 0), each value mod 255, low
    nibble. The first 4096 values come from the recurrence; each later run of 4096 from the one before through the
    recurrence composed 4096 times (s -> A*s + C), so a large image costs numpy time, not a Python loop per pixel."""
    a, c, m, run = 1664525, 1013904223, 2**32, 4096
    seeds, seed = [], 0
    for _ in range(min(count, run)):
        seed = (a * seed + c) % m
        seeds.append(seed)
    step_a, step_c = 1, 0
    for _ in range(run):
        step_a, step_c = (a * step_a) % m, (a * step_c + c) % m
    chunks = [np.array(seeds, dtype=np.uint64)]
    total = len(seeds)
    while total < count:
        # A*s < 2**64 for 32-bit A and s; a wrap when adding C is harmless modulo 2**32
        chunks.append((np.uint64(step_a) * chunks[-1] + np.uint64(step_c)) & np.uint64(m - 1))
        total += run
    return ((np.concatenate(chunks)[:count] % 255) & 0x0F).astype(np.uint8)


def _extract_painted(image: Image.Image) -> bytes | None:
    """The zlib-decompressed JSON from A1111's painted data blocks, or None when the image has none."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    lit = (pixels > 0).all(axis=2)  # A1111's crop_black: drop the all-black frame around the blocks
    cols, rows = np.flatnonzero(lit.any(axis=0)), np.flatnonzero(lit.any(axis=1))
    if cols.size == 0:
        return None
    pixels = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] & 0x0F
    black = np.flatnonzero(pixels.sum(axis=(0, 2)) == 0)
    if black.size < 2:
        return None
    low, high = pixels[:, : black.min(), :], pixels[:, black.max() + 1 :, :]
    if low.size == 0 or low.shape != high.shape:
        return None
    mask = _lcg_mask(low.size).reshape(low.shape)
    block = (((high ^ mask) << 4) | (low ^ mask)).astype(np.uint8).tobytes()
    inflater = zlib.decompressobj()
    try:
        payload = inflater.decompress(block, _MAX_JSON)
    except zlib.error:
        return None
    return payload if inflater.eof else None
