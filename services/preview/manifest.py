"""The preview manifest: what was rendered beside a savepoint, so a progress sheet can be drawn later.

    <job_prefix>savepoints/000050/previews/p0-s1-w1.png ...   the images (any names; the manifest lists them)
                                           manifest.json      written LAST: one entry per image

The images go first and the manifest last (every store write is atomic), so a listed manifest always points at
images that exist. `collect_progress` gathers a job's manifests for `sheets.progress_layout`; one unreadable
manifest is logged and skipped, because a whole sheet must not fail over one bad savepoint.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidArgument
from services.common.storage import ObjectNotFound, Store, validate_prefix

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "PreviewEntry",
    "PreviewManifest",
    "write_manifest",
    "read_manifest",
    "collect_progress",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PreviewEntry:
    key: str  # the PNG's full store key, so a reader needs no folder arithmetic
    prompt_index: int  # into PreviewManifest.prompts
    prompt: str  # as rendered: the template with the trigger substituted
    seed: int
    weight: float  # the embedding's strength for this image (1.0 = as trained)


@dataclass(frozen=True)
class PreviewManifest:
    step: int
    job_id: str
    prompts: tuple[str, ...]  # the templates, with [name] where the trigger goes
    negative_prompt: str
    trigger: str
    embedding_key: str  # the savepoint's .safetensors the previews were rendered with
    model: dict[str, str]  # reference, sha256, short_hash
    sampling: dict[str, Any]  # steps, cfg_scale, sampler, width, height
    entries: tuple[PreviewEntry, ...]

    def to_json(self) -> bytes:
        document = {
            "version": MANIFEST_VERSION,
            "step": self.step,
            "job_id": self.job_id,
            "prompts": list(self.prompts),
            "negative_prompt": self.negative_prompt,
            "trigger": self.trigger,
            "embedding_key": self.embedding_key,
            "model": dict(self.model),
            "sampling": dict(self.sampling),
            "entries": [
                {"key": e.key, "prompt_index": e.prompt_index, "prompt": e.prompt, "seed": e.seed, "weight": e.weight}
                for e in self.entries
            ],
        }
        return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, key: str) -> PreviewManifest:
        """Parse a manifest; raise InvalidArgument naming `key` and the first thing wrong with it."""
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _invalid(key, f"is not valid UTF-8 JSON ({error})") from error
        fields = _Fields(document, key, "")
        version = fields.integer("version")
        if version > MANIFEST_VERSION or version < 1:
            raise _invalid(
                key,
                f"has version {version}, but this preview service reads versions 1 to {MANIFEST_VERSION}; "
                "upgrade the preview service to read previews written by a newer one",
            )
        prompts = tuple(fields.strings("prompts"))
        entries = []
        for index, item in enumerate(fields.value("entries", list)):
            entry = _Fields(item, key, f"entries[{index}].")
            prompt_index = entry.integer("prompt_index")
            if not 0 <= prompt_index < len(prompts):
                raise _invalid(
                    key, f"entries[{index}].prompt_index is {prompt_index}, but there are {len(prompts)} prompts"
                )
            weight = entry.value("weight", (int, float))
            entries.append(
                PreviewEntry(
                    entry.value("key", str),
                    prompt_index,
                    entry.value("prompt", str),
                    entry.integer("seed"),
                    float(weight),
                )
            )
        model = fields.value("model", dict)
        if not all(isinstance(v, str) for v in model.values()):
            raise _invalid(key, "field 'model' must map names to strings (reference, sha256, short_hash)")
        return cls(
            step=fields.integer("step"),
            job_id=fields.value("job_id", str),
            prompts=prompts,
            negative_prompt=fields.value("negative_prompt", str),
            trigger=fields.value("trigger", str),
            embedding_key=fields.value("embedding_key", str),
            model=model,
            sampling=fields.value("sampling", dict),
            entries=tuple(entries),
        )


def write_manifest(store: Store, prefix: str, manifest: PreviewManifest) -> str:
    """Store the manifest in the previews folder `prefix`; call it after every image is stored."""
    key = _folder(prefix, field="prefix") + MANIFEST_NAME
    store.put(key, manifest.to_json(), content_type="application/json")
    return key


def read_manifest(store: Store, key: str) -> PreviewManifest:
    return PreviewManifest.from_json(store.get(key), key=key)


def collect_progress(store: Store, job_prefix: str) -> list[PreviewManifest]:
    """Every readable preview manifest of the job, in step order; unreadable ones are logged and skipped."""
    root = _folder(job_prefix, field="job_prefix") + "savepoints/"
    pattern = re.compile(re.escape(root) + r"[^/]+/previews/" + re.escape(MANIFEST_NAME))
    manifests = []
    for info in store.list(root):
        if not pattern.fullmatch(info.key):
            continue
        try:
            manifests.append(read_manifest(store, info.key))
        except InvalidArgument as error:
            log.warning("skipping unreadable preview manifest: %s", error)
        except ObjectNotFound:
            # Deleted between list and get (savepoint retention pruned it): nothing to draw.
            log.info("preview manifest %s vanished while collecting progress", info.key)
    return sorted(manifests, key=lambda m: m.step)


def _folder(prefix: str, *, field: str) -> str:
    validate_prefix(prefix, field=field)
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _invalid(key: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"preview manifest {key} {problem}", reason="INVALID_PREVIEW_MANIFEST", metadata={"key": key}
    )


class _Fields:
    """Typed access to one JSON object, with errors that name the manifest and the field."""

    def __init__(self, document: object, key: str, path: str) -> None:
        if not isinstance(document, dict):
            where = f"{path[:-1]} " if path else ""
            raise _invalid(key, f"{where}must be a JSON object, got {type(document).__name__}")
        self._document, self._key, self._path = document, key, path

    def value(self, name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in self._document:
            raise _invalid(self._key, f"is missing field '{self._path}{name}'")
        value = self._document[name]
        # bool is an int subclass in Python, but true is never a valid step, seed or weight.
        if isinstance(value, bool) or not isinstance(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            wanted = "a number" if float in kinds else " or ".join(_JSON_NAMES[k] for k in kinds)
            raise _invalid(self._key, f"field '{self._path}{name}' must be {wanted}, got {type(value).__name__}")
        return value

    def integer(self, name: str) -> int:
        return self.value(name, int)

    def strings(self, name: str) -> list[str]:
        values = self.value(name, list)
        if not all(isinstance(v, str) for v in values):
            raise _invalid(self._key, f"field '{self._path}{name}' must be a list of strings")
        return values


_JSON_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object"}
