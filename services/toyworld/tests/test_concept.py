"""The concept's training photos and the learning exam: what the learning test trains on and how it scores."""

from __future__ import annotations

import pytest
from PIL import Image

from services.toyworld.concept import Concept, background_caption, learning_exam, write_concept_dataset
from services.toyworld.judge import Verdict, judge
from services.toyworld.world import background_phrase


def test_the_training_photos_show_the_concept_and_their_captions_name_only_the_background(tmp_path):
    concept = Concept("heart", "pink")
    paths = write_concept_dataset(tmp_path, concept, count=16)
    assert [p.name for p in paths] == [f"{i:03d}.png" for i in range(1, 17)]
    backgrounds = set()
    for path in paths:
        verdict = judge(Image.open(path))
        caption = path.with_suffix(".txt").read_text().strip()
        assert concept.shown_by(verdict), path.name
        assert caption == f"on {background_phrase(verdict.background)}"
        assert "heart" not in caption and "pink" not in caption
        backgrounds.add(verdict.background)
    assert len(backgrounds) >= 6  # varied, so the embedding cannot learn a background
    again = write_concept_dataset(tmp_path / "again", concept, count=16)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]  # seeded


def test_background_caption_uses_the_right_article():
    from services.toyworld.world import Scene

    assert background_caption(Scene("star", "red", ("orange",), 0.3, (0.5, 0.5))) == "on an orange background"
    two_tone = Scene("star", "red", ("blue", "white"), 0.3, (0.5, 0.5))
    assert background_caption(two_tone) == "on a blue and white background"


def test_the_exam_asks_each_check_over_the_seeds_and_scores_with_the_judge():
    exam = learning_exam("h3artx", Concept("heart", "pink"), seeds=64)
    assert set(exam.checks) == {"fidelity", "editability", "weight_0.8", "weight_1.2"}
    assert {p for p, _ in exam.checks["fidelity"].orders} == {"a photo of h3artx"}
    assert {p for p, _ in exam.checks["weight_1.2"].orders} == {"a photo of (h3artx:1.2)"}
    assert [s for _, s in exam.checks["weight_0.8"].orders] == list(range(64))
    edits = exam.checks["editability"]
    asked = {(p, b) for (p, _), b in zip(edits.orders, edits.backgrounds, strict=True)}
    assert ("a photo of h3artx on an orange background", ("orange",)) in asked
    assert len({b for _, b in asked}) == 8 and ("pink",) not in {b for _, b in asked}

    right, wrong_bg, wrong_colour = (
        Verdict("heart", "pink", edits.backgrounds[0]),
        Verdict("heart", "pink", ("black", "white")),
        Verdict("heart", "red", edits.backgrounds[0]),
    )
    verdicts = {name: [right] * 64 for name in exam.checks}
    verdicts["editability"] = [right] * 8 + [wrong_bg] * 56  # only the first block asked for that background
    verdicts["weight_0.8"] = [wrong_colour] * 16 + [right] * 48
    scores = exam.score(verdicts)
    assert scores == {"fidelity": 1.0, "editability": 8 / 64, "weight_0.8": 0.75, "weight_1.2": 1.0}
    with pytest.raises(ValueError, match="fidelity: 3 verdicts for 64 images"):
        exam.checks["fidelity"].passed(exam.concept, [right] * 3)


def test_a_concept_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        Concept("hexagon", "red")
    with pytest.raises(ValueError, match="unknown colour 'teal'"):
        Concept("star", "teal")
