"""The demo's own parts: the sample dataset, fixing captions and the loss plot."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from services.toyworld.judge import judge
from tistudio_client.demo_flow import remove_words
from tistudio_client.loss_plot import loss_plot_png, read_loss_csv
from tistudio_client.sample_data import SAMPLE_CONCEPT, write_sample_dataset


def test_the_sample_dataset_is_seeded_and_needs_cropping(tmp_path):
    first = write_sample_dataset(tmp_path / "a", count=6)
    again = write_sample_dataset(tmp_path / "b", count=6)
    assert [p.name for p in first] == [f"{i:03d}.png" for i in range(1, 7)]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    sizes = set()
    for path in first:
        with Image.open(path) as image:
            sizes.add(image.size)
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            square = image.crop((left, top, left + side, top + side)).resize((64, 64), Image.Resampling.LANCZOS)
        assert SAMPLE_CONCEPT.shown_by(judge(square)), path.name  # Preprocess's centre crop keeps the concept
    assert any(w != h for w, h in sizes)  # Preprocess has to crop to 1:1


@pytest.mark.parametrize(
    ("caption", "fixed"),
    [
        ("a purple star on a green background", "on a green background"),
        ("A Purple Star, on a blue and white background", "on a blue and white background"),
        ("a photo of a purple star", "a photo of"),
        ("a red circle on a green background", "a red circle on a green background"),
        ("a purple starfish", "a purple starfish"),
    ],
)
def test_fixing_captions_removes_the_concept_words_and_their_article(caption, fixed):
    assert remove_words(caption, "purple star") == fixed


def test_loss_csv_rows_skip_bad_values_and_plot_as_png():
    data = b"step,epoch,epoch_step,loss,learn_rate\n1,0,1,0.25,0.005\n2,0,2,nan,0.005\n3,0,3,0.2,0.005\n4,0,4,,0.005\n"
    rows = read_loss_csv(data)
    assert rows == [(1, 0.25), (3, 0.2)]
    image = Image.open(io.BytesIO(loss_plot_png(rows, width=640, height=320)))
    assert image.format == "PNG" and image.size == (640, 320)
    assert Image.open(io.BytesIO(loss_plot_png([(5, 0.1)]))).size == (800, 400)  # one step, one value: no crash
    with pytest.raises(ValueError, match="no loss rows"):
        loss_plot_png([])
