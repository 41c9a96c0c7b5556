"""The preview service's domain: models and embeddings by reference, and txt2img into the store.

    studio = PreviewStudio(store, models, EmbeddingLibrary(store), Renderer())
    generation = studio.generate(GenerateSpec(model="models/sd15", prompt="a photo of (anna:0.8)",
                                          embeddings=(EmbeddingSource("embeddings/anna.safetensors"),), seed=1))

Pure domain: no protobuf. The servicer converts requests into these specs; a notebook can call them directly.
RenderPreviews, contact sheets and evaluation build on `model`, `embeddings` and `renderer` (their own modules).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.errors import InvalidArgument
from services.common.model_pool import ModelPool
from services.common.models import model_display_name
from services.common.storage import Store, validate_prefix
from services.preview.embedding_library import EmbeddingLibrary, LoadedEmbedding
from services.preview.rendering import ImageOrder, LoadedModel, RenderedImage, Renderer, Sampling

__all__ = ["EmbeddingSource", "GenerateSpec", "GeneratedFile", "Generation", "PreviewStudio", "MAX_BATCH_SIZE"]

MAX_BATCH_SIZE = 16


@dataclass(frozen=True)
class EmbeddingSource:
    key: str  # the file in the store
    trigger: str = ""  # empty: A1111's rule (the file name; a PNG's stored name)
    field: str = "embeddings[0]"  # the request field, for error messages


@dataclass(frozen=True)
class GenerateSpec:
    model: str = ""  # "" means the service's default model
    model_config: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    embeddings: tuple[EmbeddingSource, ...] = ()
    seed: int = 0  # image i uses seed + i
    batch_size: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    output_prefix: str = ""  # "" means generations/<time>-<seed>/


@dataclass(frozen=True)
class GeneratedFile:
    key: str
    rendered: RenderedImage


@dataclass(frozen=True)
class Generation:
    model: LoadedModel  # what the reference resolved to (the default model when the spec named none)
    files: list[GeneratedFile]


class PreviewStudio:
    def __init__(
        self,
        store: Store,
        models: ModelPool,
        embeddings: EmbeddingLibrary,
        renderer: Renderer,
        *,
        default_model: str | None = None,
        default_clip: str | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.library = embeddings
        self.renderer = renderer
        self.default_model = default_model
        self.default_clip = default_clip

    def model(self, reference: str, config: str = "", *, field: str = "model") -> LoadedModel:
        reference = reference or self.default_model or ""
        if not reference:
            raise InvalidArgument(
                f"{field}.reference is empty and the service has no default model (TISTUDIO_SD_MODEL); name a model",
                field=f"{field}.reference",
                reason="MODEL_REQUIRED",
            )
        components = self.models.stable_diffusion(reference, config)
        return LoadedModel(reference, model_display_name(reference), components)

    def embeddings(self, sources: Sequence[EmbeddingSource], model: LoadedModel) -> list[LoadedEmbedding]:
        """Load and check every embedding; two with the same trigger are refused (which would a prompt mean?)."""
        loaded: list[LoadedEmbedding] = []
        for source in sources:
            embedding = self.library.load(source.key, trigger=source.trigger, field=f"{source.field}.file")
            self.library.check(embedding, model.embedding_dims, model_name=model.name)
            clash = next((e for e in loaded if e.trigger.lower() == embedding.trigger.lower()), None)
            if clash is not None:
                raise InvalidArgument(
                    f"{source.field}: {source.key} and {clash.key} both use the trigger {embedding.trigger!r}; set "
                    "a different trigger on one of them",
                    field=f"{source.field}.trigger",
                    reason="DUPLICATE_TRIGGER",
                )
            loaded.append(embedding)
        return loaded

    def generate(self, spec: GenerateSpec) -> Generation:
        if not 1 <= spec.batch_size <= MAX_BATCH_SIZE:
            raise InvalidArgument(
                f"batch_size {spec.batch_size} must be between 1 and {MAX_BATCH_SIZE}",
                field="batch_size",
                reason="INVALID_BATCH_SIZE",
            )
        prefix = output_prefix(spec.output_prefix, f"generations/{time.strftime('%Y%m%d-%H%M%S')}-{spec.seed}/")
        model = self.model(spec.model, spec.model_config)
        embeddings = self.embeddings(spec.embeddings, model)
        orders = [ImageOrder(spec.prompt, spec.negative_prompt, spec.seed + i) for i in range(spec.batch_size)]
        rendered = self.renderer.render(model, embeddings, orders, spec.sampling)
        files = []
        for index, image in enumerate(rendered):
            key = f"{prefix}{index:05d}-{image.seed}.png"  # A1111's file naming
            self.store.put(key, image.png, content_type="image/png")
            files.append(GeneratedFile(key, image))
        return Generation(model, files)


def output_prefix(prefix: str, default: str, *, field: str = "output.key") -> str:
    """A folder prefix ending in "/", validated as a store key."""
    prefix = prefix or default
    if not prefix.endswith("/"):
        prefix += "/"
    return validate_prefix(prefix, field=field)
