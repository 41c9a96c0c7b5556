"""Contact sheets: exact geometry, cells landing in their boxes, missing cells, and the two layouts built on it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from services.common.errors import InvalidArgument
from services.preview import sheets
from services.preview.manifest import PreviewEntry, PreviewManifest
from services.preview.sheets import (
    encode_png,
    final_exam_sheet,
    grid_geometry,
    labelled_grid,
    progress_layout,
)

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, colour)


def centre(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def test_geometry_sizes_add_up() -> None:
    geometry = grid_geometry(3, 4, 64, 48, 100, True)
    m, g = sheets.MARGIN, sheets.GAP
    assert geometry.size == (
        m + 100 + g + 4 * 64 + 3 * g + m,
        m + sheets.TITLE_HEIGHT + sheets.LINE_HEIGHT + 3 * 48 + 2 * g + m,
    )
    assert geometry.cell_box(2, 3)[2:] == (geometry.size[0] - m, geometry.size[1] - m)
    bare = grid_geometry(1, 1, 10, 10, 0, False, has_column_labels=False)
    assert bare.size == (10 + 2 * m, 10 + 2 * m) and bare.cell_box(0, 0) == (m, m, m + 10, m + 10)


def test_cells_land_in_their_boxes_at_the_computed_size() -> None:
    cells = [[solid(RED), solid(GREEN)], [solid(BLUE), solid(YELLOW)]]
    sheet = labelled_grid(cells, row_labels=["step 50", "step 100"], column_labels=["seed 1", "seed 2"], title="t")
    assert sheet.mode == "RGB"
    label_width = sheet.size[0] - 2 * sheets.MARGIN - sheets.GAP - 2 * 32 - sheets.GAP
    assert 0 < label_width <= sheets.ROW_LABEL_MAX_WIDTH
    geometry = grid_geometry(2, 2, 32, 32, label_width, True)
    assert sheet.size == geometry.size
    for row, colours in enumerate([(RED, GREEN), (BLUE, YELLOW)]):
        for column, colour in enumerate(colours):
            box = geometry.cell_box(row, column)
            assert sheet.getpixel(centre(box)) == colour
            assert sheet.getpixel(box[:2]) == colour and sheet.getpixel((box[2] - 1, box[3] - 1)) == colour
    assert sheet.getpixel((1, 1)) == sheets.BACKGROUND


def test_missing_cell_is_grey_and_all_missing_uses_default_size() -> None:
    sheet = labelled_grid([[solid(RED), None]], row_labels=[""], column_labels=["a", "b"])
    geometry = grid_geometry(1, 2, 32, 32, 0, False)
    assert sheet.size == geometry.size
    box = geometry.cell_box(0, 1)
    assert sheet.getpixel((box[0] + 1, box[1] + 1)) == sheets.MISSING_FILL
    empty = labelled_grid([[None]], row_labels=[""], column_labels=[""])
    assert empty.size == grid_geometry(1, 1, 256, 256, 0, False, has_column_labels=False).size


def test_scaling_keeps_aspect_and_centres() -> None:
    wide = solid(RED, (64, 32))  # fits 40 x 20 in a 40 px cell, with 10 px of white above and below
    sheet = labelled_grid([[wide]], row_labels=[""], column_labels=["x"], cell_size=40)
    x0, y0, x1, y1 = grid_geometry(1, 1, 40, 40, 0, False).cell_box(0, 0)
    assert sheet.getpixel((x0, y0 + 10)) == RED and sheet.getpixel((x1 - 1, y1 - 11)) == RED
    assert sheet.getpixel((x0 + 20, y0 + 5)) == sheets.BACKGROUND
    assert sheet.getpixel((x0 + 20, y1 - 5)) == sheets.BACKGROUND


def test_transparent_pixels_show_white() -> None:
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    sheet = labelled_grid([[clear]], row_labels=[""], column_labels=[""])
    assert sheet.getpixel((sheets.MARGIN + 8, sheets.MARGIN + 8)) == sheets.BACKGROUND


@pytest.mark.parametrize(
    ("cells", "rows", "columns", "problem"),
    [
        ([[None, None], [None]], ["a", "b"], ["x", "y"], "row 1 has 1 cells but there are 2 column labels"),
        ([[None]], ["a", "b"], ["x"], "got 1 rows of cells but 2 row labels"),
        ([], [], ["x"], "at least one row"),
    ],
)
def test_bad_shapes_refused(cells, rows, columns, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        labelled_grid(cells, row_labels=rows, column_labels=columns)


def test_long_row_labels_wrap_within_the_cap() -> None:
    caption = "a photo of kitty sitting on a very long windowsill in the afternoon sun " * 4
    lines = sheets._wrap(caption, sheets._font(sheets.LABEL_FONT_SIZE), 100, 3)
    assert len(lines) == 3 and lines[-1].endswith("...")
    sheet = labelled_grid([[solid(RED)]], row_labels=[caption], column_labels=["x"])
    assert sheet.size[0] == 2 * sheets.MARGIN + sheets.ROW_LABEL_MAX_WIDTH + sheets.GAP + 32


def manifest(step: int, combos: list[tuple[int, float]], prompt_index: int = 0) -> PreviewManifest:
    return PreviewManifest(
        step=step,
        job_id="abc",
        prompts=("a photo of [name]", "[name] on a beach"),
        negative_prompt="",
        trigger="kitty",
        embedding_key=f"jobs/abc/savepoints/{step:06d}/kitty.safetensors",
        model={"reference": "sd15", "sha256": "", "short_hash": ""},
        sampling={"steps": 2, "cfg_scale": 7.0, "sampler": "euler", "width": 64, "height": 64},
        entries=tuple(PreviewEntry(f"{step}/s{s}-w{w:g}", prompt_index, "p", s, w) for s, w in combos),
    )


MANIFESTS = [
    manifest(100, [(2, 1.0), (1, 1.0), (1, 0.5), (1, 1.5)]),
    manifest(50, [(1, 1.0), (2, 1.0), (1, 0.5)]),  # not rendered at weight 1.5
    manifest(150, [(1, 1.0), (1, 0.5), (1, 1.5)]),  # seed 2 dropped
]


def test_progress_layout_by_seed() -> None:
    layout = progress_layout(MANIFESTS, prompt_index=0, columns="seeds")
    assert layout.row_labels == ["step 50", "step 100", "step 150"]
    assert layout.column_labels == ["seed 1", "seed 2"]
    assert layout.keys == [["50/s1-w1", "50/s2-w1"], ["100/s1-w1", "100/s2-w1"], ["150/s1-w1", None]]
    assert layout.title == "a photo of [name]"


def test_progress_layout_by_weight_uses_the_first_seed() -> None:
    layout = progress_layout(MANIFESTS, prompt_index=0, columns="weights")
    assert layout.column_labels == ["weight 0.5", "weight 1", "weight 1.5"]
    assert layout.keys[0] == ["50/s1-w0.5", "50/s1-w1", None]
    assert layout.keys[2] == ["150/s1-w0.5", "150/s1-w1", "150/s1-w1.5"]


def test_progress_layout_refusals() -> None:
    with pytest.raises(InvalidArgument, match="no previews found under jobs/abc/: train with") as caught:
        progress_layout([], prompt_index=0, columns="seeds", job_prefix="jobs/abc/")
    assert caught.value.field == "job_output"
    with pytest.raises(InvalidArgument, match=r"no preview has prompt_index 1.*\[0\]") as caught:
        progress_layout(MANIFESTS, prompt_index=1, columns="seeds")
    assert caught.value.field == "prompt_index"
    with pytest.raises(InvalidArgument, match="'seeds' or 'weights'"):
        progress_layout(MANIFESTS, prompt_index=0, columns="steps")


def test_final_exam_sheet_is_two_columns_by_n_rows() -> None:
    rows = [(solid(RED, (48, 48)), solid(GREEN), "kitty on a sofa"), (solid(BLUE), None, "kitty in a box")]
    sheet = final_exam_sheet(rows, cell_size=40, title="final exam")
    label_width = sheet.size[0] - 2 * sheets.MARGIN - sheets.GAP - 2 * 40 - sheets.GAP
    geometry = grid_geometry(2, 2, 40, 40, label_width, True)
    assert sheet.size == geometry.size
    assert sheet.getpixel(centre(geometry.cell_box(0, 0))) == RED
    assert sheet.getpixel(centre(geometry.cell_box(0, 1))) == GREEN
    box = geometry.cell_box(1, 1)
    assert sheet.getpixel((box[0] + 1, box[1] + 1)) == sheets.MISSING_FILL
    with pytest.raises(ValueError, match="at least one"):
        final_exam_sheet([])


def test_encode_png_round_trips() -> None:
    image = solid(RED, (8, 4))
    decoded = Image.open(io.BytesIO(encode_png(image)))
    assert decoded.format == "PNG" and decoded.size == (8, 4) and decoded.getpixel((0, 0)) == RED
