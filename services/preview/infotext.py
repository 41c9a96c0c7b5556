"""A1111 "infotext": the generation parameters A1111 writes into a PNG's `parameters` text chunk, and reads back
with "PNG Info" / "Send to txt2img".

    a photo of subj3ct, smiling
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, Model: sd15,
    TI hashes: "subj3ct: 1a2b3c4d5e6f", Version: tistudio 0.1.0

(the last line is one line). Values holding a comma, colon or newline are JSON-quoted, as A1111's `quote` does;
the negative-prompt line is left out when there is none; numbers drop a trailing ".0".
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from PIL import Image
from PIL.PngImagePlugin import PngInfo

__all__ = ["Infotext", "png_with_infotext", "parse_infotext", "read_png_infotext"]

_PARAM = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


@dataclass(frozen=True)
class Infotext:
    prompt: str
    negative_prompt: str
    steps: int
    sampler: str  # A1111's display name, "Euler a"
    cfg_scale: float
    seed: int
    width: int
    height: int
    model_hash: str  # A1111's short model hash (10 hex)
    model_name: str
    ti_hashes: Sequence[tuple[str, str]] = ()  # (trigger, 12-hex hash) of each embedding the prompts use
    extra: Mapping[str, str] = field(default_factory=dict)  # e.g. Emphasis, or a preview's training step

    def text(self) -> str:
        params: dict[str, object] = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "CFG scale": _number(self.cfg_scale),
            "Seed": self.seed,
            "Size": f"{self.width}x{self.height}",
            "Model hash": self.model_hash,
            "Model": self.model_name,
        }
        if self.ti_hashes:
            params["TI hashes"] = ", ".join(f"{name}: {digest}" for name, digest in self.ti_hashes)
        params.update(self.extra)
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(", ".join(f"{key}: {_quote(str(value))}" for key, value in params.items() if value != ""))
        return "\n".join(lines)


def png_with_infotext(image: Image.Image, infotext: str) -> bytes:
    """PNG bytes with `infotext` in the `parameters` chunk (tEXt, or iTXt when it is not Latin-1)."""
    info = PngInfo()
    info.add_text("parameters", infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


def read_png_infotext(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return str(image.text.get("parameters", ""))


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, {key: value}) the way A1111's `parse_generation_parameters` splits infotext."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:  # not a parameters line: all of it is prompt
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].lstrip()
        (negative if in_negative else prompt).append(line)
    params = {}
    for key, value in _PARAM.findall(last):
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        params[key.strip()] = value
    return "\n".join(prompt), "\n".join(negative), params


def _quote(text: str) -> str:
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{round(value, 4)}"
