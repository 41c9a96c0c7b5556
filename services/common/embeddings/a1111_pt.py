"""PyTorch pickles (A1111 `.pt`, diffusers `learned_embeds.bin`, kohya `.pt`): loaded safely, written exactly.

Loading uses only `torch.load(weights_only=True)`: its unpickler builds tensors, numbers, strings and plain
containers and refuses every other global *before* calling anything, so a planted `__reduce__` never runs.
Writing produces A1111's exact dict (its `Embedding.save`), which `weights_only` loads back with no custom class.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings

import torch

from services.common.embeddings.errors import UnreadableEmbedding, UnsafePickle
from services.common.embeddings.model import META_SD_CHECKPOINT, META_SD_CHECKPOINT_NAME, Embedding

__all__ = ["A1111_TOKEN", "a1111_dict", "load_pickle", "write_a1111_pt"]

# A1111 stores the placeholder "*" with token id 265 (the id of "*" in CLIP's vocabulary); loaders ignore it.
A1111_TOKEN = {"*": 265}
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_pickle(data: bytes, *, filename: str) -> object:
    """Unpickle a torch zip or legacy file with the weights-only unpickler; nothing in the file can run."""
    try:
        # The weights-only unpickler warns on pickle protocols other than 2 (some tools save with 4). The warning
        # is about the file, not our code, and a "warnings as errors" filter would turn a good file into a failure.
        # (catch_warnings is process-wide; the window is one small load and only silences that category.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            asks = f"it asks for `{found.group(1)}`, which is neither a tensor nor plain data"
        else:
            asks = f"it uses a pickle operation the safe loader does not allow ({_detail(exc)})"
        raise UnsafePickle(
            f"{filename} is a pickle that a safe load refuses: {asks}. Nothing in it was run. Convert it to "
            ".safetensors with the tool that made it if you trust its source; otherwise delete it",
            filename=filename,
        ) from None
    except Exception as exc:  # miniz, EOF and magic-number errors: a damaged or foreign file
        raise UnreadableEmbedding(
            f"{filename} is not a readable PyTorch file ({_first_line(exc)}); it may be truncated or not an "
            "embedding: download it again",
            filename=filename,
        ) from None


def a1111_dict(embedding: Embedding, *, sd_checkpoint: str = "", sd_checkpoint_name: str = "") -> dict[str, object]:
    """The dict A1111's `Embedding.save` pickles, key for key: unknown checkpoint fields are None, as A1111's are."""
    checkpoint = sd_checkpoint or embedding.metadata.get(META_SD_CHECKPOINT, "")
    checkpoint_name = sd_checkpoint_name or embedding.metadata.get(META_SD_CHECKPOINT_NAME, "")
    return {
        "string_to_token": dict(A1111_TOKEN),
        "string_to_param": {"*": embedding.vectors[0]},
        "name": embedding.name,
        "step": embedding.step,
        "sd_checkpoint": checkpoint or None,
        "sd_checkpoint_name": checkpoint_name or None,
    }


def write_a1111_pt(embedding: Embedding, *, sd_checkpoint: str = "", sd_checkpoint_name: str = "") -> bytes:
    """torch.save of `a1111_dict`. The bytes are deterministic: torch's zip writer stamps no time, and its
    serialization id is derived from the content, so the same embedding gives the same file (and TI hash)."""
    buffer = io.BytesIO()
    torch.save(a1111_dict(embedding, sd_checkpoint=sd_checkpoint, sd_checkpoint_name=sd_checkpoint_name), buffer)
    return buffer.getvalue()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _detail(exc: BaseException) -> str:
    """torch's weights-only message opens with advice to load unsafely; keep only the line naming the problem."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Unsupported") or ("WeightsUnpickler error: " in line and not line.endswith("error:")):
            return line.split("WeightsUnpickler error: ")[-1][:200]
    return "an unknown pickle operation"
