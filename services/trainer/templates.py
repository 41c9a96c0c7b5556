"""Prompt templates and caption processing, as A1111 builds training prompts (`modules/textual_inversion/dataset.py`).

A template is one prompt per line; each sample draws one line at random. `[filewords]` becomes the image's caption
(its `<stem>.txt`, else words from its file name) and `[name]` the text that maps to the embedding's vectors.

A1111's `PersonalizedBase.create_text`, which we follow draw for draw so a seeded run reproduces it:
    line = choice(lines); tags = caption.split(",")
    dropout:  keep each tag when random() > p          (then)
    shuffle:  random.shuffle(tags)
    line.replace("[filewords]", ",".join(tags)).replace("[name]", name)
Tags are not stripped and are rejoined with a bare ",": a tag keeps its own leading space. CLIP's tokenizer splits
punctuation and whitespace, so "x,a" and "x, a" tokenize alike; keeping A1111's bytes keeps prompts identical to its
logs. `[filewords]` is replaced first, so a caption may itself hold `[name]` (a known A1111 workflow).

kohya's keep_tokens adds `keep_tags`: the first N tags never move or drop (users keep "a woman" first).
"""

from __future__ import annotations

import posixpath
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from services.common.errors import InvalidArgument

__all__ = [
    "BUILTIN_TEMPLATES",
    "PromptTemplate",
    "CaptionProcessing",
    "filewords_for",
    "process_tags",
    "build_prompt",
    "PromptSampler",
]

_BUILTIN_NAMES = ("none", "style", "style_filewords", "subject", "subject_filewords", "photo_filewords")
# A1111's default filename fallback: strip leading digits and dashes and the spaces after them (re_numbers_at_start;
# its optional word regex is empty by default).
_NUMBERS_AT_START = re.compile(r"^[-\d]+\s*")
# Brackets that look like a misspelt placeholder ("[Name]", "[file words]"): A1111 would pass them to the model as
# text. Other brackets are A1111's de-emphasis ("[blurry]") and are left alone.
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_NEAR_PLACEHOLDERS = {"name", "names", "filewords", "fileword", "filename", "filenames"}


def _template_lines(text: str) -> tuple[str, ...]:
    # A1111 strips each line; we also drop blank lines, which A1111 would draw as an empty prompt.
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _load_builtins() -> Mapping[str, tuple[str, ...]]:
    folder = resources.files("services.trainer").joinpath("templates")
    return MappingProxyType(
        {name: _template_lines(folder.joinpath(f"{name}.txt").read_text(encoding="utf-8")) for name in _BUILTIN_NAMES}
    )


BUILTIN_TEMPLATES: Mapping[str, tuple[str, ...]] = _load_builtins()


def _placeholder_typos(line: str) -> list[str]:
    typos = []
    for match in _BRACKETED.finditer(line):
        word = re.sub(r"[\s_-]", "", match.group(1)).lower()
        if word in _NEAR_PLACEHOLDERS and match.group(0) not in ("[name]", "[filewords]"):
            typos.append(match.group(0))
    return typos


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # a built-in name or "custom"
    lines: tuple[str, ...]  # non-empty, stripped

    def __post_init__(self) -> None:
        if not self.lines or not isinstance(self.lines, tuple):
            raise ValueError(f"template '{self.name}' needs a non-empty tuple of lines, got {self.lines!r}")

    @classmethod
    def builtin(cls, name: str) -> PromptTemplate:
        if name not in BUILTIN_TEMPLATES:
            raise InvalidArgument(
                f"unknown template '{name}': use one of {', '.join(BUILTIN_TEMPLATES)}, or send your own lines "
                "in template_text",
                field="spec.template",
                reason="TEMPLATE_UNKNOWN",
            )
        return cls(name, BUILTIN_TEMPLATES[name])

    @classmethod
    def from_text(cls, text: str, *, field: str = "spec.template_text") -> PromptTemplate:
        """The user's own template. Refused when no line has [name] (the embedding would never be in a prompt and
        could not learn) or when a line holds a misspelt placeholder (it would reach the model as literal text)."""
        # Editors on Windows prepend a BOM; it is not part of the first prompt.
        lines = text.removeprefix("\ufeff").splitlines()
        numbered = [(n, line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]
        if not numbered:
            raise InvalidArgument(
                "the template is empty: write one prompt per line, e.g. 'a photo of [name], [filewords]'",
                field=field,
                reason="TEMPLATE_INVALID",
            )
        problems = [
            f"line {n}: {typo} is not a placeholder" for n, line in numbered for typo in _placeholder_typos(line)
        ]
        if problems:
            raise InvalidArgument(
                "; ".join(problems) + ": the placeholders are exactly [name] and [filewords] (lower case)",
                field=field,
                reason="TEMPLATE_INVALID",
            )
        if not any("[name]" in line for _, line in numbered):
            raise InvalidArgument(
                f"no line of the template has [name] ({len(numbered)} line(s) checked), so the embedding would "
                "never appear in a training prompt: put [name] where it belongs, e.g. 'a photo of [name], [filewords]'",
                field=field,
                reason="TEMPLATE_WITHOUT_NAME",
            )
        return cls("custom", tuple(line for _, line in numbered))

    @property
    def uses_filewords(self) -> bool:
        return any("[filewords]" in line for line in self.lines)

    @property
    def uses_name(self) -> bool:
        """False for the built-in "none" ("picture"): the embedding then learns only from captions holding [name]."""
        return any("[name]" in line for line in self.lines)


@dataclass(frozen=True)
class CaptionProcessing:
    shuffle_tags: bool = False
    keep_tags: int = 0  # kohya keep_tokens: the first N comma-separated tags never move or drop
    tag_dropout: float = 0.0  # probability of dropping each tag that is not kept

    def __post_init__(self) -> None:
        if self.keep_tags < 0:
            raise InvalidArgument(f"keep_tags is {self.keep_tags}: use 0 or more", field="spec.keep_tags")
        if not 0.0 <= self.tag_dropout < 1.0:  # also refuses NaN
            raise InvalidArgument(
                f"tag_dropout {self.tag_dropout} must be at least 0 and below 1 (users' guides use 0.1)",
                field="spec.tag_dropout",
            )

    @property
    def varies(self) -> bool:
        """True when the same caption can give different prompts (A1111 rebuilds the prompt per sample then)."""
        return self.shuffle_tags or self.tag_dropout > 0


def filewords_for(image_key: str, caption: str | None) -> str:
    """The caption text when the image has one (even an empty one, as A1111), else A1111's file-name fallback:
    `00012-a woman, smiling.png` -> `a woman, smiling`."""
    if caption is not None:
        # A1111 keeps the file's trailing newline and a Notepad BOM; both are noise in a prompt, so we drop them.
        return caption.lstrip("\ufeff").strip()
    stem, _ = posixpath.splitext(posixpath.basename(image_key))
    return _NUMBERS_AT_START.sub("", stem)


def process_tags(filewords: str, processing: CaptionProcessing, rng: random.Random) -> str:
    """Dropout, then shuffle, of the tags after the first `keep_tags`, drawing from `rng` exactly as A1111."""
    if not processing.varies:
        return filewords  # A1111 draws nothing for the tags here
    tags = filewords.split(",")
    kept, rest = tags[: processing.keep_tags], tags[processing.keep_tags :]
    if processing.tag_dropout > 0:
        rest = [tag for tag in rest if rng.random() > processing.tag_dropout]
    if processing.shuffle_tags:
        rng.shuffle(rest)
    return ",".join(kept + rest)


def build_prompt(
    template_line: str, name_text: str, filewords: str, processing: CaptionProcessing, rng: random.Random
) -> str:
    # The tags are drawn even when the line has no [filewords], as A1111 does, so the random stream stays aligned.
    tags = process_tags(filewords, processing, rng)
    return template_line.replace("[filewords]", tags).replace("[name]", name_text)


class PromptSampler:
    """Draws one template line per sample (A1111: a random line per sample) and builds prompts reproducibly from a
    seeded RNG whose state can be saved and restored (for bit-exact resume)."""

    def __init__(self, template: PromptTemplate, processing: CaptionProcessing, seed: int) -> None:
        self.template = template
        self.processing = processing
        self._rng = random.Random(seed)

    def prompt(self, name_text: str, filewords: str) -> str:
        line = self._rng.choice(self.template.lines)
        return build_prompt(line, name_text, filewords, self.processing, self._rng)

    def state(self) -> dict[str, object]:
        """JSON-serialisable: Mersenne Twister state as plain ints."""
        version, internal, gauss_next = self._rng.getstate()
        return {"version": version, "internal": list(internal), "gauss_next": gauss_next}

    def set_state(self, state: object) -> None:
        try:
            if not isinstance(state, Mapping):
                raise TypeError(f"expected a mapping, got {type(state).__name__}")
            internal = tuple(int(x) for x in state["internal"])
            self._rng.setstate((int(state["version"]), internal, state["gauss_next"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                "the saved prompt-sampler state is not one that PromptSampler.state() wrote; resume from a savepoint "
                "written by this version"
            ) from e
