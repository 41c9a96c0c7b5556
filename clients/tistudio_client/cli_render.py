"""`tistudio generate | sheet progress | sheet exam | export`: images and files out of the services.

With --out the PNGs, sheets and embedding files are copied to this machine: from the store when --store (or
TISTUDIO_STORE_URL) is given, else inline in the response.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.common.errors import TistudioError as StoreError
from tistudio.common.v1 import common_pb2
from tistudio.preview.v1 import preview_pb2 as pre
from tistudio_client.cli_common import (
    enum_choices,
    open_client,
    print_json,
    split_embedding,
    to_dict,
)
from tistudio_client.client import Tistudio
from tistudio_client.errors import TransferError
from tistudio_client.workflow import FORMATS

__all__ = ["register"]

SAMPLERS = enum_choices(common_pb2.Sampler, "SAMPLER_")
COLUMNS = enum_choices(pre.SheetColumns, "SHEET_COLUMNS_")


def _sampling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, help="sampling steps (default 20)")
    parser.add_argument("--cfg", type=float, help="CFG scale (default 7)")
    parser.add_argument("--sampler", choices=list(SAMPLERS), help="default euler-a")
    parser.add_argument("--width", type=int, default=0, help="default: the model's size")
    parser.add_argument("--height", type=int, default=0)


def _sampling(args: argparse.Namespace) -> pre.SamplingSettings:
    settings = pre.SamplingSettings(width=args.width, height=args.height)
    if args.steps is not None:
        settings.steps = args.steps
    if args.cfg is not None:
        settings.cfg_scale = args.cfg
    if args.sampler:
        settings.sampler = SAMPLERS[args.sampler]
    return settings


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    generate = commands.add_parser("generate", parents=[common], help="txt2img with embeddings")
    generate.add_argument("prompt", metavar="PROMPT", help="A1111 prompt syntax")
    generate.add_argument("--negative", default="", help="negative prompt")
    generate.add_argument(
        "--embedding", action="append", metavar="KEY[:TRIGGER]", help="embedding file to load (repeatable)"
    )
    generate.add_argument("--model", default="", help="Stable Diffusion model (default: the preview service's)")
    generate.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    generate.add_argument("--batch", type=int, default=1, help="images to generate, 1-16")
    _sampling_options(generate)
    generate.add_argument("--out", metavar="DIR", help="copy the PNGs into this folder")
    generate.set_defaults(run=_generate, command="generate")

    sheet = commands.add_parser("sheet", help="contact sheets: a job's progress or the final exam")
    kinds = sheet.add_subparsers(required=True, metavar="KIND")
    progress = kinds.add_parser("progress", parents=[common], help="a job's previews over its steps")
    progress.add_argument("job_output", metavar="JOB_OUTPUT_PREFIX", help='the job output, e.g. "jobs/<id>/"')
    progress.add_argument("--columns", choices=list(COLUMNS), help="column axis (default seeds)")
    progress.add_argument("--prompt-index", type=int, default=0, help="which preview prompt to show")
    progress.add_argument("--cell-size", type=int, default=0, help="cell side in pixels (default: image size)")
    progress.add_argument("--out", metavar="FILE", help="write the sheet PNG here")
    progress.set_defaults(run=_sheet, command="sheet progress")
    exam = kinds.add_parser("exam", parents=[common], help="each training caption rendered with the embedding")
    exam.add_argument("--dataset", required=True, metavar="PREFIX")
    exam.add_argument("--embedding", required=True, metavar="KEY[:TRIGGER]")
    exam.add_argument("--model", default="")
    exam.add_argument("--template", default="", help='default "a photo of [name], [filewords]"')
    exam.add_argument("--seed", type=int, default=0)
    exam.add_argument("--cell-size", type=int, default=0)
    _sampling_options(exam)
    exam.add_argument("--out", metavar="FILE", help="write the sheet PNG here")
    exam.set_defaults(run=_sheet, command="sheet exam")

    export = commands.add_parser("export", parents=[common], help="an embedding file in any format, to a folder")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--job", metavar="ID", help="the job's latest savepoint (or --step's)")
    source.add_argument("--embedding", metavar="KEY", help="an embedding file in the store")
    export.add_argument(
        "--format", action="append", choices=sorted(FORMATS), help="safetensors (default), pt, diffusers; repeatable"
    )
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--step", type=int, default=0, help="savepoint step (default: the latest)")
    export.add_argument("--name", default="", help="rename the trigger word")
    export.set_defaults(run=_export, command="export")


def _generate(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        inline = bool(args.out) and not ts.has_store
        response = ts.preview.generate(
            prompt=args.prompt,
            negative_prompt=args.negative,
            embeddings=[split_embedding(e) for e in args.embedding or []],
            model={"reference": args.model},
            seed=args.seed,
            batch_size=args.batch,
            sampling=_sampling(args),
            include_data=inline,
        )
        paths = []
        for image in response.images if args.out else []:
            path = Path(args.out) / image.stored.key.rsplit("/", 1)[-1]
            paths.append(_save(ts, image.image, image.stored.key, path))
    if args.json:
        images = [{k: v for k, v in to_dict(i).items() if k != "image"} for i in response.images]
        print_json({"images": images, "files": [str(p) for p in paths]})
        return 0
    for image in response.images:
        print(f"{image.stored.key}  seed {image.seed}")
    for path in paths:
        print(f"wrote {path}")
    return 0


def _sheet(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        request = pre.ContactSheetRequest(cell_size=args.cell_size, include_data=bool(args.out) and not ts.has_store)
        if args.command == "sheet progress":
            request.kind = pre.SHEET_KIND_PROGRESS
            prefix = args.job_output if args.job_output.endswith("/") else args.job_output + "/"
            request.job_output.key = prefix
            request.prompt_index = args.prompt_index
            if args.columns:
                request.columns = COLUMNS[args.columns]
        else:
            request.kind = pre.SHEET_KIND_FINAL_EXAM
            request.dataset.key = args.dataset if args.dataset.endswith("/") else args.dataset + "/"
            request.embedding.CopyFrom(pre.EmbeddingRef(**split_embedding(args.embedding)))
            request.model.reference = args.model
            request.template = args.template
            request.seed = args.seed
            request.sampling.CopyFrom(_sampling(args))
        response = ts.preview.contact_sheet(request)
        path = _save(ts, response.sheet, response.stored.key, Path(args.out)) if args.out else None
    if args.json:
        result = {k: v for k, v in to_dict(response).items() if k != "sheet"}
        print_json({**result, "file": str(path) if path else None})
    else:
        print(f"{response.stored.key}  {response.rows} rows x {response.columns} columns")
        if path:
            print(f"wrote {path}")
    return 0


def _save(ts: Tistudio, image: common_pb2.ImageData, key: str, path: Path) -> Path:
    """Write an image to `path` from its inline bytes, else from the store."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if image.inline_data:
            path.write_bytes(image.inline_data)
        else:
            ts.store.download(image.ref.key or key, path)
    except StoreError as err:
        raise TransferError(f"download of {key!r} to {path} failed: {err.message}", path=str(path), key=key) from err
    except OSError as err:
        raise TransferError(f"cannot write {path}: {err.strerror or err}", path=str(path), key=key) from err
    return path


def _export(args: argparse.Namespace) -> int:
    source = args.job if args.job else common_pb2.StorageRef(key=args.embedding)
    with open_client(args) as ts:
        paths = ts.export(source, args.out, formats=args.format or ["safetensors"], step=args.step, name=args.name)
    if args.json:
        print_json({"files": [str(p) for p in paths]})
    else:
        for path in paths:
            print(path)
    return 0
