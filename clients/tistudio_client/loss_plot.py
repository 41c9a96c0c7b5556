"""A PNG plot of a training run's loss.csv (A1111's columns: step, epoch, epoch_step, loss, learn_rate).

Drawn with PIL only: the raw per-step loss in light grey, its moving average in blue (single steps of textual
inversion are noisy; the trend is what tells a user whether the run learns), axis ticks and labels.
"""

from __future__ import annotations

import csv
import io
import math

from PIL import Image, ImageDraw, ImageFont

__all__ = ["read_loss_csv", "loss_plot_png"]

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 70, 20, 40, 50


def read_loss_csv(data: bytes) -> list[tuple[int, float]]:
    """(step, loss) rows; rows with a non-finite or missing loss are left out."""
    rows = []
    for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
        try:
            step, loss = int(row["step"]), float(row["loss"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(loss):
            rows.append((step, loss))
    return rows


def loss_plot_png(rows: list[tuple[int, float]], *, title: str = "loss", width: int = 800, height: int = 400) -> bytes:
    if not rows:
        raise ValueError("no loss rows to plot: the run has not logged a step yet")
    font = ImageFont.load_default(size=13)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    steps = [s for s, _ in rows]
    losses = [v for _, v in rows]
    window = max(1, len(rows) // 20)
    smooth = [_mean(losses[max(0, i - window + 1) : i + 1]) for i in range(len(rows))]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(losses), max(losses)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, right, top, bottom = _MARGIN_LEFT, width - _MARGIN_RIGHT, _MARGIN_TOP, height - _MARGIN_BOTTOM

    def point(step: float, value: float) -> tuple[float, float]:
        return (left + (step - x0) / (x1 - x0) * (right - left), bottom - (value - y0) / (y1 - y0) * (bottom - top))

    draw.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        y = point(x0, value)[1]
        draw.line((left - 4, y, left, y), fill=(120, 120, 120))
        draw.text((left - 8, y), f"{value:.4g}", fill="black", font=font, anchor="rm")
        step = x0 + (x1 - x0) * i / 4
        x = point(step, y0)[0]
        draw.line((x, bottom, x, bottom + 4), fill=(120, 120, 120))
        draw.text((x, bottom + 8), f"{step:.0f}", fill="black", font=font, anchor="mt")
    draw.line([point(s, v) for s, v in rows], fill=(200, 200, 200), width=1)
    draw.line([point(s, v) for s, v in zip(steps, smooth, strict=True)], fill=(30, 90, 200), width=2)
    draw.text((width / 2, 12), f"{title}  (blue: mean of {window} steps)", fill="black", font=font, anchor="mt")
    draw.text((width / 2, height - 14), "step", fill="black", font=font, anchor="mm")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
