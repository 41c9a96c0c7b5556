"""Contact sheets: labelled grids of preview images, for training progress and for the final exam.

    layout = progress_layout(collect_progress(store, "jobs/abc/"), prompt_index=0, columns="seeds")
    cells = [[load(key) if key else None for key in row] for row in layout.keys]
    png = encode_png(labelled_grid(cells, row_labels=layout.row_labels, column_labels=layout.column_labels,
                                   title=layout.title, cell_size=256))

Every size is fixed by `grid_geometry`, so the layout is predictable (and testable) without drawing. A missing
image is a grey square marked "missing": the trainer drops previews when they fall behind, and a sheet with gaps
is more useful than no sheet.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from services.common.errors import InvalidArgument
from services.preview.manifest import PreviewManifest

__all__ = [
    "GridGeometry",
    "ProgressLayout",
    "grid_geometry",
    "labelled_grid",
    "progress_layout",
    "final_exam_sheet",
    "encode_png",
]

MARGIN = 8  # around the whole sheet
GAP = 4  # between cells, and between the row labels and the first column
PAD = 4  # inside label boxes
LABEL_FONT_SIZE = 14
LINE_HEIGHT = 20  # one label line: the font's ascent + descent (18 px at 14 pt) plus spacing
TITLE_FONT_SIZE = 18
TITLE_HEIGHT = 30
ROW_LABEL_MAX_WIDTH = 240  # longer labels wrap; captions would otherwise dwarf the images
DEFAULT_CELL_SIZE = 256  # when cell_size is 0 and every image is missing
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MISSING_FILL = (160, 160, 160)
MISSING_TEXT = (96, 96, 96)


@dataclass(frozen=True)
class GridGeometry:
    rows: int
    columns: int
    cell_width: int
    cell_height: int
    row_label_width: int  # 0: no label column
    has_title: bool
    has_column_labels: bool = True

    @property
    def left(self) -> int:
        return MARGIN + (self.row_label_width + GAP if self.row_label_width else 0)

    @property
    def top(self) -> int:
        return MARGIN + (TITLE_HEIGHT if self.has_title else 0) + (LINE_HEIGHT if self.has_column_labels else 0)

    @property
    def size(self) -> tuple[int, int]:
        width = self.left + self.columns * (self.cell_width + GAP) - GAP + MARGIN
        height = self.top + self.rows * (self.cell_height + GAP) - GAP + MARGIN
        return width, height

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in PIL's convention: right and bottom are exclusive."""
        x = self.left + column * (self.cell_width + GAP)
        y = self.top + row * (self.cell_height + GAP)
        return x, y, x + self.cell_width, y + self.cell_height

    def row_label_box(self, row: int) -> tuple[int, int, int, int]:
        _, y0, _, y1 = self.cell_box(row, 0)
        return MARGIN, y0, MARGIN + self.row_label_width, y1

    def column_label_box(self, column: int) -> tuple[int, int, int, int]:
        x0, y0, x1, _ = self.cell_box(0, column)
        return x0, y0 - LINE_HEIGHT, x1, y0


def grid_geometry(
    rows: int,
    columns: int,
    cell_width: int,
    cell_height: int,
    row_label_width: int,
    has_title: bool,
    *,
    has_column_labels: bool = True,
) -> GridGeometry:
    if rows < 1 or columns < 1:
        raise ValueError(f"a grid needs at least one row and one column, got {rows} x {columns}")
    if cell_width < 1 or cell_height < 1 or row_label_width < 0:
        raise ValueError(f"cell size must be positive, got {cell_width} x {cell_height}")
    return GridGeometry(rows, columns, cell_width, cell_height, row_label_width, has_title, has_column_labels)


def labelled_grid(
    cells: Sequence[Sequence[Image.Image | None]],
    *,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str = "",
    cell_size: int = 0,
) -> Image.Image:
    """An RGB sheet of `cells` (rows of images, None for a missing one), each fitted into a square of `cell_size`
    (0: the first image's own size), with column labels on top, row labels on the left and an optional title."""
    columns = len(column_labels)
    if len(cells) != len(row_labels):
        raise ValueError(f"got {len(cells)} rows of cells but {len(row_labels)} row labels; give one label per row")
    for index, row in enumerate(cells):
        if len(row) != columns:
            raise ValueError(
                f"row {index} has {len(row)} cells but there are {columns} column labels; "
                "every row needs one cell (or None) per column"
            )
    if cell_size < 0:
        raise ValueError(f"cell_size must be 0 (the images' own size) or a positive number of pixels, got {cell_size}")
    first = next((image for row in cells for image in row if image is not None), None)
    if cell_size:
        cell_width = cell_height = cell_size
    elif first is not None:
        cell_width, cell_height = first.size
    else:
        cell_width = cell_height = DEFAULT_CELL_SIZE
    font = _font(LABEL_FONT_SIZE)
    widest = max((font.getlength(label) for label in row_labels), default=0)
    row_label_width = min(int(widest) + 2 * PAD, ROW_LABEL_MAX_WIDTH) if widest else 0
    geometry = grid_geometry(
        len(cells), columns, cell_width, cell_height, row_label_width, bool(title), has_column_labels=any(column_labels)
    )
    sheet = Image.new("RGB", geometry.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        title_font = _font(TITLE_FONT_SIZE)
        width = geometry.size[0] - 2 * MARGIN
        draw.text((MARGIN, MARGIN + PAD), _clip(title, title_font, width), font=title_font, fill=TEXT)
    if geometry.has_column_labels:
        for column, label in enumerate(column_labels):
            x0, y0, x1, y1 = geometry.column_label_box(column)
            text = _clip(label, font, x1 - x0)
            x = x0 + (x1 - x0 - font.getlength(text)) / 2
            draw.text((x, y0 + 1), text, font=font, fill=TEXT)
    for row, images in enumerate(cells):
        if row_label_width:
            x0, y0, x1, y1 = geometry.row_label_box(row)
            lines = _wrap(row_labels[row], font, x1 - x0 - 2 * PAD, max(1, (y1 - y0) // LINE_HEIGHT))
            y = y0 + (y1 - y0 - len(lines) * LINE_HEIGHT) // 2
            for line in lines:
                draw.text((x0 + PAD, y + 1), line, font=font, fill=TEXT)
                y += LINE_HEIGHT
        for column, image in enumerate(images):
            box = geometry.cell_box(row, column)
            if image is None:
                _draw_missing(draw, box, font)
            else:
                _paste_fitted(sheet, image, box)
    return sheet


@dataclass(frozen=True)
class ProgressLayout:
    keys: list[list[str | None]]  # [row][column]: the image's store key, None where it was not rendered
    row_labels: list[str]  # "step 50"
    column_labels: list[str]  # "seed 1" or "weight 0.8"
    title: str  # the prompt template


def progress_layout(
    manifests: Sequence[PreviewManifest], *, prompt_index: int, columns: str, job_prefix: str = ""
) -> ProgressLayout:
    """One row per step (ascending) for the prompt `prompt_index`; columns are its seeds at the weight nearest
    1.0 ("seeds"), or its weights at the smallest seed ("weights"). `job_prefix` only words the empty error."""
    if columns not in ("seeds", "weights"):
        raise InvalidArgument(f"columns must be 'seeds' or 'weights', got {columns!r}", field="columns")
    if not manifests:
        where = job_prefix or "the job output"
        raise InvalidArgument(
            f"no previews found under {where}: train with preview_every_steps set, or wait for the first preview",
            field="job_output",
        )
    ordered = sorted(manifests, key=lambda m: m.step)
    entries = [e for m in ordered for e in m.entries if e.prompt_index == prompt_index]
    if not entries:
        present = sorted({e.prompt_index for m in ordered for e in m.entries})
        raise InvalidArgument(
            f"no preview has prompt_index {prompt_index}; the previews have prompt indexes {present}",
            field="prompt_index",
        )
    seeds = sorted({e.seed for e in entries})
    weights = sorted({e.weight for e in entries})
    keys: list[list[str | None]] = []
    if columns == "seeds":
        # One weight per sheet: the one nearest full strength (the larger on a tie), the embedding as trained.
        weight = min(weights, key=lambda w: (abs(w - 1.0), -w))
        for manifest in ordered:
            found = {e.seed: e.key for e in manifest.entries if e.prompt_index == prompt_index and e.weight == weight}
            keys.append([found.get(s) for s in seeds])
        labels = [f"seed {s}" for s in seeds]
    else:
        seed = seeds[0]
        for manifest in ordered:
            found = {e.weight: e.key for e in manifest.entries if e.prompt_index == prompt_index and e.seed == seed}
            keys.append([found.get(w) for w in weights])
        labels = [f"weight {w:g}" for w in weights]
    template = next(m.prompts[prompt_index] for m in reversed(ordered) if prompt_index < len(m.prompts))
    return ProgressLayout(keys, [f"step {m.step}" for m in ordered], labels, template)


def final_exam_sheet(
    rows: Sequence[tuple[Image.Image, Image.Image | None, str]], *, cell_size: int = 0, title: str = ""
) -> Image.Image:
    """Training images beside what the embedding generates from their captions, one row per caption."""
    if not rows:
        raise ValueError("a final exam sheet needs at least one (training image, generated image, caption) row")
    return labelled_grid(
        [[training, generated] for training, generated, _ in rows],
        row_labels=[caption for _, _, caption in rows],
        column_labels=["training image", "generated"],
        title=title,
        cell_size=cell_size,
    )


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _paste_fitted(sheet: Image.Image, image: Image.Image, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    scale = min((x1 - x0) / image.width, (y1 - y0) / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    fitted = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
    position = (x0 + (x1 - x0 - size[0]) // 2, y0 + (y1 - y0 - size[1]) // 2)
    if fitted.mode in ("RGBA", "LA") or (fitted.mode == "P" and "transparency" in fitted.info):
        # Transparent areas show the white sheet, not whatever colour the hidden pixels happen to hold.
        fitted = fitted.convert("RGBA")
        sheet.paste(fitted, position, fitted)
    else:
        sheet.paste(fitted.convert("RGB"), position)


def _draw_missing(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], font: ImageFont.FreeTypeFont) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=MISSING_FILL)
    text = _clip("missing", font, x1 - x0)
    draw.text(((x0 + x1) / 2, (y0 + y1) / 2), text, font=font, fill=MISSING_TEXT, anchor="mm")


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; words too long for a line are split; overflow ends in '...'."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while len(word) > 1 and font.getlength(word) > width:
            cut = next((i for i in range(len(word) - 1, 0, -1) if font.getlength(word[:i]) <= width), 1)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [_clip(" ".join(lines[max_lines - 1 :]), font, width, force=True)]
    return lines


def _clip(text: str, font: ImageFont.FreeTypeFont, width: float, *, force: bool = False) -> str:
    """`text` if it fits in `width` pixels, else its longest prefix that fits with '...' appended."""
    if not force and font.getlength(text) <= width:
        return text
    for end in range(len(text), -1, -1):
        clipped = text[:end].rstrip() + "..."
        if font.getlength(clipped) <= width:
            return clipped
    return ""
