"""Savepoint scoring with CLIP: how much each savepoint looks like the subject, and how well it still follows prompts.

The two scores of the DreamBooth paper (Ruiz et al. 2023, section 4.1), for textual-inversion savepoints:

- fidelity (CLIP-I): the mean cosine between CLIP image features of images generated with SUBJECT_PROMPT and of the
  training images, over the whole generated x training matrix;
- editability (CLIP-T): the mean cosine between each image generated with an edit prompt and the CLIP text features
  of that prompt, its `[name]` replaced by a plain subject word (see `scoring_text`).

Late savepoints usually gain fidelity and lose editability (they overfit); `recommend` picks the most faithful one
among those that are still about as editable as the best. `evaluate` runs the whole comparison and leaves making
images to a `render` callable, so it runs the same with the real pipeline, a notebook, or a fake in tests.

    scorer = ClipScorer(load_clip(resolve_model("openai/clip-vit-large-patch14")))
    evaluation = evaluate(savepoints, training_images, render, scorer, seeds=(1, 2), subject_word="woman")
    evaluation.scores[evaluation.recommended_index]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from services.common.errors import InvalidArgument
from services.common.models.loading import ClipComponents

__all__ = [
    "DEFAULT_EDIT_PROMPTS",
    "DEFAULT_MARGIN",
    "NAME",
    "SUBJECT_PROMPT",
    "ClipScorer",
    "Evaluation",
    "SavepointInput",
    "SavepointScore",
    "evaluate",
    "recommend",
    "scoring_text",
]

NAME = "[name]"
SUBJECT_PROMPT = "a photo of [name]"
DEFAULT_MARGIN = 0.02
# New contexts (place, medium, weather, style) that a savepoint which overfits the training photos stops following.
DEFAULT_EDIT_PROMPTS = (
    "a photo of [name] on a beach",
    "a watercolor painting of [name]",
    "[name] in the snow",
    "a photo of [name] in a city street at night",
    "an oil painting of [name] in a forest",
    "a pencil sketch of [name]",
)
# Words that only introduce the subject: with no subject word they go with it ("a photo of [name]" -> "a photo").
_LEAD_INS = r"(?:(?:of|a|an|the)\s+)*"
_BLANK_NAME = re.compile(r"(?:^|\s)" + _LEAD_INS + re.escape(NAME) + r"(?:'s)?", re.IGNORECASE)


@dataclass(frozen=True)
class SavepointInput:
    label: str  # how the caller names it (a file name, a storage key); reported back as is
    step: int  # training step it was saved at: the chart's x axis and the tie-breaker
    embedding: object  # whatever `render` needs to use it (a loaded embedding, a reference); opaque here


@dataclass(frozen=True)
class SavepointScore:
    label: str
    step: int
    fidelity: float  # mean image-image cosine with the training images, in [-1, 1]
    editability: float  # mean image-text cosine with the edit prompts, in [-1, 1]


@dataclass(frozen=True)
class Evaluation:
    scores: tuple[SavepointScore, ...]  # in the order the savepoints were given
    recommended_index: int  # into scores
    margin: float  # the editability margin `recommend` used

    @property
    def recommended(self) -> SavepointScore:
        return self.scores[self.recommended_index]


class ClipScorer:
    """L2-normalised CLIP features of images and texts, so that a dot product is a cosine."""

    def __init__(self, clip: ClipComponents, *, batch_size: int = 32) -> None:
        self.processor = clip.processor
        self.model = clip.model
        self.batch_size = batch_size  # bounds activation memory for a large dataset on a real CLIP-L
        parameter = next(self.model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[N, D] unit vectors (float32, on CPU) for N images of any size or mode (the processor resizes to RGB)."""
        chunks = [torch.empty(0, self.model.config.projection_dim)]
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start : start + self.batch_size])
            pixels = self.processor.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            output = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
            chunks.append(_normalised(output))
        return torch.cat(chunks)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] unit vectors for N texts, truncated to CLIP's context (77 tokens)."""
        chunks = [torch.empty(0, self.model.config.projection_dim)]
        max_length = self.model.config.text_config.max_position_embeddings
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            tokens = self.processor.tokenizer(
                batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(self.device)
            output = self.model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
            chunks.append(_normalised(output))
        return torch.cat(chunks)


def _normalised(output) -> torch.Tensor:
    # transformers 5 returns a BaseModelOutputWithPooling whose pooler_output holds the projected features;
    # 4.x returned that tensor itself.
    features = output if isinstance(output, torch.Tensor) else output.pooler_output
    return torch.nn.functional.normalize(features.float(), dim=-1).cpu()


def scoring_text(prompt: str, subject_word: str = "") -> str:
    """The text an edit image is compared with: `[name]` (any case) becomes `subject_word`; with no subject word
    it is removed together with the lead-in words right before it (of/a/an/the) and a possessive 's after it,
    whitespace is collapsed and no space is left before punctuation: "a photo of [name] on a beach" ->
    "a photo on a beach", "[name] in the snow" -> "in the snow". A prompt that was only the subject becomes
    "a photo". CLIP then scores the context alone, which is what editability asks about."""
    subject_word = " ".join(subject_word.split())
    if subject_word:
        text = re.sub(re.escape(NAME), lambda _: subject_word, prompt, flags=re.IGNORECASE)
    else:
        text = _BLANK_NAME.sub(" ", prompt)
    text = re.sub(r"\s+([,.;:!?])", r"\1", " ".join(text.split()))
    return text.lstrip(",.;:!? ") or "a photo"


def recommend(scores: Sequence[SavepointScore], margin: float = DEFAULT_MARGIN) -> int:
    """Index of the most faithful savepoint among those whose editability is within `margin` of the best one;
    equal fidelity goes to the earlier step (less training, same result)."""
    if not scores:
        raise ValueError("recommend needs at least one savepoint score")
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    # The tolerance keeps a savepoint exactly `margin` below the best in, whatever the float rounding.
    floor = max(s.editability for s in scores) - margin - 1e-9
    candidates = [i for i, s in enumerate(scores) if s.editability >= floor]
    return min(candidates, key=lambda i: (-scores[i].fidelity, scores[i].step, i))


RenderFn = Callable[[SavepointInput, Sequence[str], Sequence[int]], list[Image.Image]]


def evaluate(
    savepoints: Sequence[SavepointInput],
    training_images: Sequence[Image.Image],
    render: RenderFn,
    scorer: ClipScorer,
    *,
    edit_prompts: Sequence[str] = DEFAULT_EDIT_PROMPTS,
    seeds: Sequence[int] = (1, 2),
    subject_word: str = "",
    margin: float = DEFAULT_MARGIN,
) -> Evaluation:
    """Score every savepoint and recommend one (see the module docstring).

    `render(savepoint, prompts, seeds)` gets SUBJECT_PROMPT followed by `edit_prompts` (all with `[name]`) and must
    return one image per (prompt, seed), prompt-major: [p0 s0, p0 s1, ..., p1 s0, ...]. `subject_word` is the
    embedding's init text when known ("woman"), else "" (see `scoring_text`).
    """
    _validate(savepoints, training_images, edit_prompts, seeds, margin)
    prompts = (SUBJECT_PROMPT, *edit_prompts)
    # Computed once: they do not depend on the savepoint.
    training = scorer.image_features(training_images)  # [T, D]
    texts = scorer.text_features([scoring_text(p, subject_word) for p in edit_prompts])  # [E, D]
    texts = texts.repeat_interleave(len(seeds), dim=0)  # [E * S, D], lined up with the prompt-major edit images
    scores = []
    for savepoint in savepoints:
        images = render(savepoint, prompts, seeds)
        if len(images) != len(prompts) * len(seeds):
            raise ValueError(
                f"render returned {len(images)} images for savepoint {savepoint.label!r}; expected one per prompt "
                f"and seed ({len(prompts)} x {len(seeds)})"
            )
        generated = scorer.image_features(images)  # [(1 + E) * S, D]
        subject, edits = generated[: len(seeds)], generated[len(seeds) :]
        fidelity = (subject @ training.T).mean().item()  # mean over the [S, T] cosine matrix
        editability = (edits * texts).sum(dim=-1).mean().item()  # row-wise cosines, [E * S] -> mean
        scores.append(SavepointScore(savepoint.label, savepoint.step, fidelity, editability))
    return Evaluation(tuple(scores), recommend(scores, margin), margin)


def _validate(savepoints, training_images, edit_prompts, seeds, margin) -> None:
    if not savepoints:
        raise InvalidArgument("no savepoints to evaluate; pass at least one embedding file", field="savepoints")
    if not training_images:
        raise InvalidArgument(
            "the dataset holds no training images; fidelity compares against them, so pass the dataset the "
            "embedding was trained on",
            field="dataset",
        )
    if not seeds:
        raise InvalidArgument("no seeds; pass at least one seed to render each prompt with", field="seeds")
    if not edit_prompts:
        raise InvalidArgument(
            "no edit prompts; pass at least one with [name] (DEFAULT_EDIT_PROMPTS is the built-in set)",
            field="edit_prompts",
        )
    missing = [p for p in edit_prompts if NAME not in p.lower()]
    if missing:
        raise InvalidArgument(
            f"edit prompt {missing[0]!r} has no [name], so its images would not show the subject; add [name] where "
            "the subject goes (e.g. 'a photo of [name] on a beach')",
            field="edit_prompts",
        )
    if not (margin >= 0 and math.isfinite(margin)):
        raise InvalidArgument(
            f"editability_margin must be a finite number >= 0 (default {DEFAULT_MARGIN}), got {margin!r}",
            field="editability_margin",
        )
