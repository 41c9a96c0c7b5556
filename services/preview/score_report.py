"""An Evaluation as files a person opens: a CSV table and a PNG line chart (drawn with PIL; no matplotlib here).

The chart has two y axes, fidelity on the left and editability on the right, each in its line's colour: with a
real CLIP the two live in different ranges (image-image cosines near 0.6-0.9, image-text ones near 0.2-0.35), and
on one shared axis both trends would flatten. The recommended savepoint gets a dashed vertical line and rings.
"""

from __future__ import annotations

import csv
import io
import math

from PIL import Image, ImageDraw, ImageFont

from services.preview.scoring import Evaluation

__all__ = ["scores_csv", "scores_chart"]

FIDELITY_COLOUR = (31, 119, 180)
EDITABILITY_COLOUR = (230, 120, 20)
RECOMMENDED_COLOUR = (40, 150, 60)
AXIS_COLOUR = (60, 60, 60)
GRID_COLOUR = (225, 225, 225)


def scores_csv(evaluation: Evaluation) -> bytes:
    """`step,label,fidelity,editability,recommended` (1 or 0), one row per savepoint in the evaluation's order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "label", "fidelity", "editability", "recommended"])
    for i, s in enumerate(evaluation.scores):
        recommended = int(i == evaluation.recommended_index)
        writer.writerow([s.step, s.label, _decimal(s.fidelity), _decimal(s.editability), recommended])
    return out.getvalue().encode("utf-8")


def _decimal(value: float) -> str:
    return f"{round(value, 6) + 0.0:.6f}"  # + 0.0 turns -0.0 into 0.0: no "-0.000000" in the table


def _value_range(values: list[float]) -> tuple[float, float]:
    """A padded [lo, hi] holding the finite `values`, never empty: equal values get a band around them."""
    values = [v for v in values if math.isfinite(v)] or [0.0]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 if hi > lo else max(abs(lo) * 0.05, 0.01)
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, *, integer: bool = False, target: int = 5) -> tuple[list[float], int]:
    """Round tick values in [lo, hi] (steps of 1, 2, 2.5 or 5 x 10^k, about `target` of them) and the decimals
    their labels need."""
    raw = (hi - lo) / max(target - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10)), key=lambda s: abs(math.log(s / raw)))
    if integer:
        step = max(1.0, float(round(step)))  # training steps are whole numbers
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]
    decimals = 0 if integer else max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if step / magnitude == 2.5 else 0)
    return ticks, decimals


def scores_chart(evaluation: Evaluation, *, width: int = 800, height: int = 450) -> bytes:
    """A PNG of fidelity and editability against the training step, `width` x `height` pixels."""
    if width < 200 or height < 150:
        raise ValueError(f"chart size {width}x{height} is too small to draw; use at least 200x150")
    scores = evaluation.scores
    font = ImageFont.load_default(size=max(10, height // 32))
    small = ImageFont.load_default(size=max(9, height // 38))
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 80, width - 80, 50, height - 60  # plot area

    steps = [float(s.step) for s in scores]
    x_lo, x_hi = (min(steps), max(steps)) if max(steps) > min(steps) else (steps[0] - 0.5, steps[0] + 0.5)
    x_pad = (x_hi - x_lo) * 0.04

    def x_of(step: float) -> float:
        return left + (step - x_lo + x_pad) / (x_hi - x_lo + 2 * x_pad) * (right - left)

    series = [
        ("fidelity (CLIP-I)", "fidelity", [s.fidelity for s in scores], FIDELITY_COLOUR, left, "rm"),
        ("editability (CLIP-T)", "editability", [s.editability for s in scores], EDITABILITY_COLOUR, right, "lm"),
    ]
    ranges = [_value_range(values) for _, _, values, *_ in series]

    def y_of(value: float, lo: float, hi: float) -> float:
        return bottom - (value - lo) / (hi - lo) * (bottom - top)

    # Grid and x ticks.
    x_ticks, _ = _ticks(x_lo, x_hi, integer=True)
    for tick in x_ticks:
        x = x_of(tick)
        draw.line([(x, top), (x, bottom)], fill=GRID_COLOUR)
        draw.text((x, bottom + 6), f"{tick:.0f}", fill=AXIS_COLOUR, font=small, anchor="mt")
    draw.text(((left + right) / 2, height - 12), "training step", fill=AXIS_COLOUR, font=font, anchor="mb")

    # One y axis per series, in its colour, ticks outside the plot.
    for (_, axis_name, _, colour, axis_x, anchor), (lo, hi) in zip(series, ranges, strict=True):
        draw.line([(axis_x, top), (axis_x, bottom)], fill=colour, width=2)
        ticks, decimals = _ticks(lo, hi)
        side = -1 if anchor == "rm" else 1
        for tick in ticks:
            y = y_of(tick, lo, hi)
            draw.line([(axis_x, y), (axis_x + 4 * side, y)], fill=colour, width=2)
            draw.text((axis_x + 7 * side, y), f"{tick:.{decimals}f}", fill=colour, font=small, anchor=anchor)
        draw.text((axis_x, top - 8), axis_name, fill=colour, font=small, anchor="mb")
    draw.line([(left, bottom), (right, bottom)], fill=AXIS_COLOUR, width=2)

    # The recommended savepoint, under the lines.
    best = evaluation.recommended
    x_best = x_of(best.step)
    for y in range(top, bottom, 10):
        draw.line([(x_best, y), (x_best, min(y + 5, bottom))], fill=RECOMMENDED_COLOUR, width=2)

    # Lines in step order (scores may come in any order), markers, rings on the recommended point.
    order = sorted(range(len(scores)), key=lambda i: (scores[i].step, i))
    for (_, _, values, colour, *_), (lo, hi) in zip(series, ranges, strict=True):
        # A NaN score (e.g. a float16 overflow) is left out rather than drawn off the chart.
        points = [(x_of(scores[i].step), y_of(values[i], lo, hi)) for i in order if math.isfinite(values[i])]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3, joint="curve")
        for x, y in points:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
        if math.isfinite(value := values[evaluation.recommended_index]):
            y = y_of(value, lo, hi)
            draw.ellipse([x_best - 9, y - 9, x_best + 9, y + 9], outline=RECOMMENDED_COLOUR, width=3)

    # Legend, above the plot.
    legend = [(name, colour) for name, _, _, colour, *_ in series]
    legend.append((f"recommended: step {best.step} (margin {evaluation.margin:g})", RECOMMENDED_COLOUR))
    x = left
    for text, colour in legend:
        draw.rectangle([x, 14, x + 14, 26], fill=colour)
        draw.text((x + 20, 20), text, fill=AXIS_COLOUR, font=font, anchor="lm")
        x += 20 + draw.textlength(text, font=font) + 24

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
