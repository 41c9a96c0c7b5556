"""ContactSheet: one labelled grid image of a job's previews over its steps, or the "final exam".

- progress: rows are the savepoints' steps, columns the seeds (or embedding weights) of one preview prompt, read
  from the preview manifests beside the savepoints; a preview that is missing shows as a grey cell.
- final exam: every training caption rendered as "a photo of [name], <caption>" (the template's [filewords])
  beside its training image, all with one seed: the users' last look before they share an embedding.
"""

from __future__ import annotations

import io
import logging
import posixpath
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from services.common.datasets import list_dataset, read_caption
from services.common.errors import InvalidArgument
from services.common.storage import ObjectNotFound, Store, validate_key
from services.preview.manifest import collect_progress
from services.preview.rendering import ImageOrder, Sampling
from services.preview.sheets import encode_png, final_exam_sheet, labelled_grid, progress_layout
from services.preview.studio import EmbeddingSource, PreviewStudio

__all__ = ["Sheet", "FinalExamSpec", "DEFAULT_EXAM_TEMPLATE", "MAX_EXAM_ROWS", "progress_sheet", "final_exam"]

log = logging.getLogger(__name__)

DEFAULT_EXAM_TEMPLATE = "a photo of [name], [filewords]"
MAX_EXAM_ROWS = 64


@dataclass(frozen=True)
class Sheet:
    png: bytes
    key: str
    rows: int
    columns: int
    width: int
    height: int


@dataclass(frozen=True)
class FinalExamSpec:
    dataset: str
    embedding: EmbeddingSource
    model: str = ""
    model_config: str = ""
    template: str = ""  # empty: DEFAULT_EXAM_TEMPLATE
    seed: int = 0
    sampling: Sampling = field(default_factory=Sampling)
    output_key: str = ""  # empty: final-exam.png beside the embedding
    cell_size: int = 0


def progress_sheet(
    store: Store,
    job_prefix: str,
    *,
    prompt_index: int = 0,
    columns: str = "seeds",
    output_key: str = "",
    cell_size: int = 0,
) -> Sheet:
    prefix = job_prefix if job_prefix.endswith("/") else job_prefix + "/"
    layout = progress_layout(
        collect_progress(store, prefix), prompt_index=prompt_index, columns=columns, job_prefix=prefix
    )
    cells = [[_image(store, key) if key else None for key in row] for row in layout.keys]
    sheet = labelled_grid(
        cells, row_labels=layout.row_labels, column_labels=layout.column_labels, title=layout.title, cell_size=cell_size
    )
    key = _output(output_key, f"{prefix}sheets/progress-p{prompt_index}-{columns}.png")
    return _store(store, sheet, key, len(layout.keys), len(layout.column_labels))


def final_exam(studio: PreviewStudio, spec: FinalExamSpec) -> Sheet:
    template = spec.template or DEFAULT_EXAM_TEMPLATE
    if "[name]" not in template:
        raise InvalidArgument(
            f"template {template!r} has no [name]; the exam tests the embedding, e.g. {DEFAULT_EXAM_TEMPLATE!r}",
            field="template",
            reason="TEMPLATE_WITHOUT_NAME",
        )
    dataset = list_dataset(studio.store, spec.dataset, field="dataset.key")
    items = [item for item in dataset.items if item.caption_key is not None][:MAX_EXAM_ROWS]
    if not items:
        raise InvalidArgument(
            f"dataset {dataset.prefix!r} has no captioned images; caption it first (CaptionDataset)",
            field="dataset.key",
            reason="DATASET_WITHOUT_CAPTIONS",
        )
    model = studio.model(spec.model, spec.model_config)
    (embedding,) = studio.embeddings([spec.embedding], model)
    captions = [read_caption(studio.store, item) or "" for item in items]
    prompts = [template.replace("[name]", embedding.trigger).replace("[filewords]", c) for c in captions]
    orders = [ImageOrder(prompt, "", spec.seed) for prompt in prompts]
    rendered = studio.renderer.render(model, [embedding], orders, spec.sampling)
    rows = [
        (_image(studio.store, item.image_key), image.image, prompt)
        for item, image, prompt in zip(items, rendered, prompts, strict=True)
    ]
    title = f"final exam: {embedding.trigger} ({posixpath.basename(embedding.key)}), seed {spec.seed}"
    sheet = final_exam_sheet(rows, cell_size=spec.cell_size, title=title)
    key = _output(spec.output_key, f"{posixpath.dirname(embedding.key) or '.'}/final-exam.png".removeprefix("./"))
    return _store(studio.store, sheet, key, len(rows), 2)


def _image(store: Store, key: str) -> Image.Image | None:
    """The image at `key`, or None (drawn as a grey cell) when it is gone or does not decode."""
    try:
        with Image.open(io.BytesIO(store.get(key))) as image:
            return image.convert("RGB")
    except (ObjectNotFound, UnidentifiedImageError, OSError) as exc:
        log.warning("contact sheet: %s cannot be shown: %s", key, exc)
        return None


def _output(key: str, default: str) -> str:
    return validate_key(key or default, field="output.key")


def _store(store: Store, sheet: Image.Image, key: str, rows: int, columns: int) -> Sheet:
    png = encode_png(sheet)
    store.put(key, png, content_type="image/png")
    return Sheet(png, key, rows, columns, sheet.width, sheet.height)
