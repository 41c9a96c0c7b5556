"""A concept to teach an embedding (one shape in one colour), its training photos, and the exam that tells
whether an embedding learned it.

    concept = Concept("star", "purple")
    write_concept_dataset(folder, concept, count=16)   # 001.png + 001.txt ("on a green background"), ...
    exam = learning_exam("st4r", concept, seeds=64)     # prompts and seeds per check
    report = exam.score({check: [judge(image), ...] for check in exam.checks})

The concept has no single word in the model's vocabulary ("purple star" is two), so an embedding that shows it
has learned something. The training captions name only the background, as users write them once they remove the
subject from BLIP's caption: the embedding must carry the shape and the colour. The exam asks for:

| check        | prompt                                        | passes when the judge sees               |
|--------------|-----------------------------------------------|------------------------------------------|
| fidelity     | `a photo of [name]`                           | the concept's shape and colour           |
| editability  | `a photo of [name] on a <colour> background`  | the concept and that plain background    |
| weight 0.8   | `a photo of ([name]:0.8)`                     | the concept                              |
| weight 1.2   | `a photo of ([name]:1.2)`                     | the concept                              |

Editability cycles the background over the colours other than the concept's, one block of seeds per colour.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from services.common.files import write_bytes_atomic, write_text_atomic
from services.toyworld.judge import Verdict
from services.toyworld.world import COLOURS, SHAPES, Scene, background_phrase, render, sample_scene

__all__ = ["Concept", "ExamCheck", "LearningExam", "learning_exam", "training_scenes", "write_concept_dataset"]


@dataclass(frozen=True)
class Concept:
    shape: str
    colour: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; the world has {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; the world has {', '.join(COLOURS)}")

    @property
    def words(self) -> str:
        return f"{self.colour} {self.shape}"

    def shown_by(self, verdict: Verdict) -> bool:
        return (verdict.shape, verdict.colour) == (self.shape, self.colour)


def training_scenes(concept: Concept, count: int, seed: int = 0) -> list[Scene]:
    """`count` scenes of the concept; backgrounds (30% two-tone), sizes and positions vary."""
    rng = random.Random(seed)
    return [sample_scene(rng, shape=concept.shape, colour=concept.colour) for _ in range(count)]


def background_caption(scene: Scene) -> str:
    """The caption with the subject removed: `on a green background`."""
    return f"on {background_phrase(scene.background)}"


def write_concept_dataset(
    folder: Path, concept: Concept, *, count: int = 16, seed: int = 0, size: int = 64, captions: bool = True
) -> list[Path]:
    """`count` PNGs (and, with `captions`, `.txt` files naming only the background) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, scene in enumerate(training_scenes(concept, count, seed), start=1):
        path = folder / f"{index:03d}.png"
        png = BytesIO()
        render(scene, size).save(png, format="PNG")
        write_bytes_atomic(path, png.getvalue())
        if captions:
            write_text_atomic(path.with_suffix(".txt"), background_caption(scene) + "\n")
        paths.append(path)
    return paths


@dataclass(frozen=True)
class ExamCheck:
    name: str
    orders: tuple[tuple[str, int], ...]  # (prompt with [name] already replaced, seed)
    backgrounds: tuple[tuple[str, ...] | None, ...]  # per order: the background asked for, None for any

    def passed(self, concept: Concept, verdicts: Sequence[Verdict]) -> float:
        """The fraction of verdicts that show the concept (and the background asked for)."""
        if len(verdicts) != len(self.orders):
            raise ValueError(f"{self.name}: {len(verdicts)} verdicts for {len(self.orders)} images")
        hits = [
            concept.shown_by(v) and (background is None or v.background == background)
            for v, background in zip(verdicts, self.backgrounds, strict=True)
        ]
        return sum(hits) / len(hits)


@dataclass(frozen=True)
class LearningExam:
    concept: Concept
    checks: Mapping[str, ExamCheck]

    def score(self, verdicts: Mapping[str, Sequence[Verdict]]) -> dict[str, float]:
        return {name: check.passed(self.concept, verdicts[name]) for name, check in self.checks.items()}


def learning_exam(trigger: str, concept: Concept, *, seeds: int = 64, first_seed: int = 0) -> LearningExam:
    """The four checks of the module docstring, each over `seeds` seeds."""
    seed_list = range(first_seed, first_seed + seeds)

    def plain(name: str, prompt: str) -> ExamCheck:
        return ExamCheck(name, tuple((prompt, s) for s in seed_list), (None,) * seeds)

    others = [c for c in COLOURS if c != concept.colour]
    block = -(-seeds // len(others))  # seeds per background colour, rounded up
    edits = []
    for i, seed in enumerate(seed_list):
        colour = others[i // block]
        edits.append((f"a photo of {trigger} on {background_phrase((colour,))}", seed))
    edit_backgrounds = tuple((others[i // block],) for i in range(seeds))
    checks = {
        "fidelity": plain("fidelity", f"a photo of {trigger}"),
        "editability": ExamCheck("editability", tuple(edits), edit_backgrounds),
        "weight_0.8": plain("weight_0.8", f"a photo of ({trigger}:0.8)"),
        "weight_1.2": plain("weight_1.2", f"a photo of ({trigger}:1.2)"),
    }
    return LearningExam(concept, checks)
