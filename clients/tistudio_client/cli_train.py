"""`tistudio train plan | start`: a TrainingSpec from flags, one flag per field.

Only the flags given are set, so every other field keeps its recipe's value, then the trainer's default (the
plan shows the resolved spec). `plan` exits 1 when a diagnostic is an error (StartTraining would refuse it);
`start` prints the job id and, with --watch, follows the job as `tistudio watch` does.
`--template-text @FILE` reads the template from a file.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client.cli_common import (
    LazyChoices,
    diagnostic_lines,
    enum_choices,
    enum_name,
    open_client,
    print_json,
    print_json_line,
)
from tistudio_client.cli_jobs import follow
from tistudio_client.errors import InvalidArgument
from tistudio_client.workflow import FORMATS

__all__ = ["register", "build_spec"]


def _recipe_names() -> list[str]:
    from services.trainer.recipes import RECIPES  # imports the engine (torch): only when --recipe is used

    return list(RECIPES)


# (flag, TrainingSpec field, type, help)
_SCALARS = [
    ("--learning-rate", "learning_rate", str, 'a rate or an A1111 schedule, "0.05:10, 0.02:20, 0.005"'),
    ("--warmup", "warmup_steps", int, "warm-up steps (constant, linear, cosine)"),
    ("--max-steps", "max_steps", int, "optimizer steps"),
    ("--batch-size", "batch_size", int, None),
    ("--grad-accum", "gradient_accumulation", int, "gradient accumulation steps"),
    ("--width", "width", int, "training width, a multiple of 8"),
    ("--height", "height", int, "training height, a multiple of 8"),
    ("--template", "template", str, "none, style, style_filewords, subject, subject_filewords, photo_filewords"),
    ("--template-text", "template_text", str, "your own template, one prompt per line ([name], [filewords])"),
    ("--keep-tags", "keep_tags", int, "the first N tags never move or drop"),
    ("--tag-dropout", "tag_dropout", float, "drop each tag with this probability"),
    ("--gradient-clip", "gradient_clip", str, 'clip value or max norm, or a schedule ("1.0:500, 0.1")'),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay (default 0)"),
    ("--min-snr-gamma", "min_snr_gamma", float, "Min-SNR loss weighting gamma"),
    ("--noise-offset", "noise_offset", float, None),
    ("--save-every", "save_every_steps", int, "savepoint every N steps (0: only at the end)"),
    ("--preview-every", "preview_every_steps", int, "previews every N steps (0: off)"),
    ("--seed", "seed", int, "seed of every random choice"),
    ("--log-every", "log_every_steps", int, "a progress event every N steps"),
]
_BOOLS = [
    ("shuffle-tags", "shuffle_tags", "shuffle the tags of [filewords]"),
    ("flip", "flip", "also train on mirrored images"),
    ("alpha-loss-weight", "alpha_loss_weight", "weight the loss by the alpha mask"),
]
_ENUMS = [
    ("--scheduler", "lr_scheduler", enum_choices(tr.LrScheduler, "LR_SCHEDULER_")),
    ("--latent-sampling", "latent_sampling", enum_choices(tr.LatentSampling, "LATENT_SAMPLING_")),
    ("--gradient-clipping", "gradient_clipping", enum_choices(tr.GradientClipping, "GRADIENT_CLIPPING_")),
    ("--precision", "precision", enum_choices(tr.Precision, "PRECISION_")),
    ("--non-finite", "non_finite", enum_choices(tr.NonFiniteAction, "NON_FINITE_ACTION_")),
]
SAMPLERS = enum_choices(common_pb2.Sampler, "SAMPLER_")


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    train = commands.add_parser("train", help="plan and start training runs")
    verbs = train.add_subparsers(required=True, metavar="VERB")
    spec = _spec_options()
    plan = verbs.add_parser("plan", parents=[common, spec], help="dry run: steps, schedule and diagnostics")
    plan.set_defaults(run=_plan, command="train plan")
    start = verbs.add_parser("start", parents=[common, spec], help="queue a training job and print its id")
    start.add_argument("--request-id", help="idempotency key (default: a fresh UUID)")
    start.add_argument("--watch", action="store_true", help="follow the job to its end, as `tistudio watch`")
    start.set_defaults(run=_start, command="train start")


def _spec_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("training spec (unset flags take the recipe's value, then the default)")
    group.add_argument("--recipe", choices=LazyChoices(_recipe_names), metavar="NAME", help="%(choices)s")
    group.add_argument("--embedding", metavar="KEY", help="the embedding file to train (from embedding create)")
    group.add_argument("--dataset", metavar="PREFIX", help="images with <stem>.txt captions")
    group.add_argument("--model", metavar="REF", help="Stable Diffusion model (default: the trainer's)")
    group.add_argument("--model-config", metavar="REF", help="config source for single-file checkpoints")
    for flag, field, kind, text in _SCALARS:
        metavar = {int: "N", float: "X"}.get(kind, "TEXT")
        group.add_argument(flag, dest=f"s_{field}", type=kind, metavar=metavar, help=text)
    for flag, field, text in _BOOLS:
        group.add_argument(f"--{flag}", dest=f"s_{field}", action=argparse.BooleanOptionalAction, help=text)
    for flag, field, choices in _ENUMS:
        group.add_argument(flag, dest=f"s_{field}", choices=list(choices))
    group.add_argument("--extra-format", action="append", choices=sorted(FORMATS), help="also save in (repeatable)")
    preview = parent.add_argument_group("previews rendered during training")
    preview.add_argument("--preview-prompt", action="append", help="prompt with [name] (repeatable)")
    preview.add_argument("--preview-negative", help="negative prompt")
    preview.add_argument("--preview-seed", action="append", type=int, help="seed (repeatable)")
    preview.add_argument("--preview-weight", action="append", type=float, help="embedding weight (repeatable)")
    preview.add_argument("--preview-steps", type=int, help="sampling steps (default 20)")
    preview.add_argument("--preview-cfg", type=float, help="CFG scale (default 7)")
    preview.add_argument("--preview-sampler", choices=list(SAMPLERS), help="default euler-a")
    preview.add_argument("--preview-width", type=int)
    preview.add_argument("--preview-height", type=int)
    return parent


def build_spec(args: argparse.Namespace) -> tr.TrainingSpec:
    """The TrainingSpec holding exactly the flags that were given."""
    spec = tr.TrainingSpec()
    if args.recipe:
        spec.recipe = args.recipe
    if args.embedding:
        spec.embedding.key = args.embedding
    if args.dataset:
        spec.dataset.key = args.dataset if args.dataset.endswith("/") else args.dataset + "/"
    if args.model:
        spec.model.reference = args.model
    if args.model_config:
        spec.model.config_reference = args.model_config
    for _, field, _, _ in _SCALARS:
        value = getattr(args, f"s_{field}")
        if field == "template_text" and value and value.startswith("@"):
            value = _read_template(value[1:])
        if value is not None:
            setattr(spec, field, value)
    for _, field, _ in _BOOLS:
        if getattr(args, f"s_{field}") is not None:
            setattr(spec, field, getattr(args, f"s_{field}"))
    for _, field, choices in _ENUMS:
        if getattr(args, f"s_{field}"):
            setattr(spec, field, choices[getattr(args, f"s_{field}")])
    spec.extra_formats.extend(dict.fromkeys(FORMATS[name] for name in args.extra_format or []))
    _fill_preview(spec.preview, args)
    return spec


def _read_template(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidArgument(f"--template-text @{path}: cannot read it: {err.strerror or err}") from err


def _fill_preview(preview: tr.PreviewSettings, args: argparse.Namespace) -> None:
    preview.prompts.extend(args.preview_prompt or [])
    preview.seeds.extend(args.preview_seed or [])
    preview.weights.extend(args.preview_weight or [])
    if args.preview_negative:
        preview.negative_prompt = args.preview_negative
    if args.preview_steps is not None:
        preview.steps = args.preview_steps
    if args.preview_cfg is not None:
        preview.cfg_scale = args.preview_cfg
    if args.preview_sampler:
        preview.sampler = SAMPLERS[args.preview_sampler]
    preview.width = args.preview_width or 0
    preview.height = args.preview_height or 0


def _plan(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        response = ts.plan(build_spec(args))
    if args.json:
        print_json(response)
    else:
        for line in plan_lines(response):
            print(line)
    return 0 if response.ok else 1


def plan_lines(response: tr.PlanTrainingResponse) -> list[str]:
    p = response.plan
    family = enum_name(common_pb2.ModelFamily, p.model.family, "MODEL_FAMILY_")
    resolved = p.resolved
    lines = [
        f"plan       {'ok' if response.ok else 'has errors: training would be refused'}",
        f"model      {p.model.name} ({family}, {p.model.short_hash or '-'})",
        f"embedding  {p.embedding.name}, {p.embedding.vectors_per_token} vectors, from step {p.embedding.step}",
        f"dataset    {resolved.dataset.key}: {p.images} images, recipe {resolved.recipe or '-'}",
        f"steps      {p.start_step} -> {p.end_step}, {p.samples_per_step} samples/step "
        f"({resolved.batch_size} x {resolved.gradient_accumulation}), {p.steps_per_epoch} steps/epoch, "
        f"{p.epochs:.2f} epochs",
        f"size       {resolved.width}x{resolved.height}, template {resolved.template or 'custom'}, "
        f"longest prompt {p.max_prompt_tokens}/75 tokens",
        "schedule",
    ]
    lines += [f"  {s.rate:g} for steps {s.start_step}-{s.end_step}" for s in p.schedule]
    if p.example_prompts:
        lines.append("example prompts")
        lines += [f"  {prompt}" for prompt in p.example_prompts]
    lines.append("diagnostics" if response.diagnostics else "diagnostics: none")
    lines += diagnostic_lines(response.diagnostics)
    return lines


def _start(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        job = ts.start(build_spec(args), request_id=args.request_id or uuid.uuid4().hex)
        if args.json:  # with --watch: the job as the first JSON line, then one line per event
            (print_json_line if args.watch else print_json)(job)
        else:
            print(job.job_id, flush=True)
        return follow(ts, job.job_id, as_json=args.json) if args.watch else 0
