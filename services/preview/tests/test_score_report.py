"""The evaluation's CSV table and PNG chart."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from PIL import Image

from services.preview.score_report import scores_chart, scores_csv
from services.preview.scoring import Evaluation, SavepointScore

EVALUATION = Evaluation(
    scores=(
        SavepointScore("emb-100.safetensors", 100, 0.62, 0.31),
        SavepointScore("emb-200.safetensors", 200, 0.7123456789, 0.305),
        SavepointScore("run, final.safetensors", 300, 0.83, -0.0000004),
    ),
    recommended_index=1,
    margin=0.02,
)


def test_csv_is_exact():
    assert scores_csv(EVALUATION).decode() == (
        "step,label,fidelity,editability,recommended\n"
        "100,emb-100.safetensors,0.620000,0.310000,0\n"
        "200,emb-200.safetensors,0.712346,0.305000,1\n"
        '300,"run, final.safetensors",0.830000,0.000000,0\n'  # quoted comma; no "-0.000000"
    )


def _png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("size", [(800, 450), (640, 360)])
def test_chart_is_a_png_of_the_requested_size(size):
    image = _png(scores_chart(EVALUATION, width=size[0], height=size[1]))
    assert (image.format, image.size, image.mode) == ("PNG", size, "RGB")
    assert len(image.getcolors(maxcolors=100_000)) > 10  # something was drawn: lines, text, markers


def test_chart_marks_the_recommended_savepoint():
    first = scores_chart(EVALUATION)
    assert scores_chart(EVALUATION) == first  # deterministic
    assert scores_chart(replace(EVALUATION, recommended_index=2)) != first


@pytest.mark.parametrize(
    "scores",
    [
        (SavepointScore("only", 0, 0.5, 0.25),),  # one savepoint: no x or y span
        (SavepointScore("a", 10, 0.5, 0.25), SavepointScore("b", 20, 0.5, 0.25)),  # equal values
        (SavepointScore("a", 10, 0.0, 0.0), SavepointScore("b", 10, 0.0, 0.0)),  # same step, zeros
        (SavepointScore("a", 10, float("nan"), 0.2), SavepointScore("b", 20, 0.4, 0.3)),  # a NaN score
    ],
)
def test_chart_handles_degenerate_inputs(scores):
    image = _png(scores_chart(Evaluation(scores, 0, 0.02), width=400, height=300))
    assert image.size == (400, 300)


def test_chart_refuses_a_size_too_small_to_draw():
    with pytest.raises(ValueError, match="too small"):
        scores_chart(EVALUATION, width=100, height=100)
