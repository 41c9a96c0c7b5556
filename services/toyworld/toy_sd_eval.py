"""Score the toy SD with the judge: render captions over many seeds through the preview renderer, read them back.

    python -m services.toyworld.toy_sd_eval --model services/toyworld/weights/toy-sd --seeds 32 --cfg 5

For each caption ("a red circle on a white background") and seed, the judge reads the picture's shape, colour and
background; the report gives the fraction right for each attribute and for all three together, per caption and
overall. The model is loaded by path exactly as the services load real SD1.x.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from services.common.models.loading import load_stable_diffusion
from services.common.models.reference import resolve_model
from services.preview.rendering import ImageOrder, LoadedModel, Renderer, Sampling
from services.toyworld.judge import judge
from services.toyworld.world import scene_from_words

__all__ = ["CAPTIONS", "Score", "load_toy_sd", "score"]

log = logging.getLogger(__name__)

# (shape, colour, background): spread over every shape, most colours, plain and two-tone backgrounds.
CAPTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("circle", "red", ("white",)),
    ("square", "blue", ("yellow",)),
    ("triangle", "green", ("pink",)),
    ("star", "yellow", ("black",)),
    ("heart", "purple", ("green",)),
    ("cross", "orange", ("blue",)),
    ("heart", "pink", ("brown",)),
    ("star", "white", ("red", "blue")),
)


@dataclass(frozen=True)
class Score:
    shape: float
    colour: float
    background: float
    full: float
    count: int


def caption_of(shape: str, colour: str, background: tuple[str, ...]) -> str:
    return scene_from_words(shape, colour, background).caption()


def load_toy_sd(path: Path | str) -> LoadedModel:
    components = load_stable_diffusion(resolve_model(str(path)))
    return LoadedModel(str(path), Path(path).name, components)


def score(
    model: LoadedModel,
    target: tuple[str, str, tuple[str, ...]],
    seeds: range,
    sampling: Sampling,
    renderer: Renderer | None = None,
) -> Score:
    """Render `target`'s caption once per seed and count what the judge finds right."""
    shape, colour, background = target
    own = renderer is None
    renderer = renderer or Renderer(max_batch=16)
    try:
        orders = [ImageOrder(caption_of(*target), "", seed) for seed in seeds]
        verdicts = [judge(r.image) for r in renderer.render(model, [], orders, sampling)]
    finally:
        if own:
            renderer.close()
    n = len(verdicts)
    return Score(
        shape=sum(v.shape == shape for v in verdicts) / n,
        colour=sum(v.colour == colour for v in verdicts) / n,
        background=sum(v.background == background for v in verdicts) / n,
        full=sum((v.shape, v.colour, v.background) == (shape, colour, background) for v in verdicts) / n,
        count=n,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Judge the toy SD's pictures of a few captions over many seeds.")
    p.add_argument("--model", type=Path, default=Path("services/toyworld/weights/toy-sd"))
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--sampler", default="euler_a")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--record", action="store_true", help="also write the figures into <model>.recipe.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load_toy_sd(args.model)
    sampling = Sampling(steps=args.steps, cfg_scale=args.cfg, sampler=args.sampler, width=64, height=64)
    renderer = Renderer(max_batch=32)
    rows = {}
    try:
        for target in CAPTIONS:
            rows[caption_of(*target)] = score(model, target, range(args.seeds), sampling, renderer).__dict__
    finally:
        renderer.close()
    mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("shape", "colour", "background", "full")}
    report = {"sampling": sampling.__dict__, "seeds": args.seeds, "mean": mean, "captions": rows}
    print(json.dumps(report, indent=2))
    recipe_path = args.model.with_name(args.model.name + ".recipe.json")
    if args.record and recipe_path.is_file():
        recipe = json.loads(recipe_path.read_text())
        evaluations = [e for e in recipe.get("evaluation", []) if e["sampling"] != report["sampling"]]
        recipe["evaluation"] = [*evaluations, report]
        recipe_path.write_text(json.dumps(recipe, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
