"""`tistudio dataset upload | preprocess | caption | lint` and `tistudio embedding create`.

Streamed commands (preprocess, caption) print a line per image, or with --json every stream message as a JSON
line. `dataset lint` prints the report and exits 0 when there are only warnings or notes, 1 when a finding is an
error (the trainer would refuse the dataset), so scripts can gate on it.
"""

from __future__ import annotations

import argparse

from tistudio.caption.v1 import caption_pb2 as cap
from tistudio.common.v1 import common_pb2
from tistudio_client.cli_common import (
    diagnostic_lines,
    enum_choices,
    has_errors,
    open_client,
    print_json,
    print_json_line,
)
from tistudio_client.datasets import folder_prefix, upload_folder

__all__ = ["register"]

CROPS = enum_choices(cap.CropMode, "CROP_MODE_")
EXISTING_ACTIONS = enum_choices(cap.ExistingCaptionAction, "EXISTING_CAPTION_ACTION_")
POLICIES = enum_choices(cap.ExistingCaptionPolicy, "EXISTING_CAPTION_POLICY_")
FAMILIES = enum_choices(common_pb2.ModelFamily, "MODEL_FAMILY_")
_FAMILY_HELP = "model family the images are for: its size is the default (sd1/sd2-512 512, sd2-768 768, sdxl 1024)"


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    dataset = commands.add_parser("dataset", help="upload, preprocess, caption and lint training images")
    verbs = dataset.add_subparsers(required=True, metavar="VERB")

    upload = verbs.add_parser("upload", parents=[common], help="copy a local folder of images into the store")
    upload.add_argument("folder", metavar="DIR")
    upload.add_argument("prefix", metavar="PREFIX", help='store prefix, e.g. "datasets/anna/raw/"')
    upload.set_defaults(run=_upload, command="dataset upload")

    pre = verbs.add_parser("preprocess", parents=[common], help="crop, resize, flip and caption into a new prefix")
    pre.add_argument("source", metavar="SRC", help="prefix holding the source images")
    pre.add_argument("destination", metavar="DST", help="prefix to write the training set to (empty or resumable)")
    pre.add_argument("--size", type=int, default=0, help="output side in pixels (default: the family's)")
    pre.add_argument("--family", choices=list(FAMILIES), help=_FAMILY_HELP)
    pre.add_argument("--crop", choices=list(CROPS), help="center (default) or focal-point")
    pre.add_argument("--flip", action="store_true", help="also write a mirrored copy of every image")
    pre.add_argument("--split", action="store_true", help="split images much longer than they are wide")
    pre.add_argument("--existing-caption", choices=list(EXISTING_ACTIONS), help="default copy")
    pre.add_argument("--keep-alpha", action="store_true", help="keep the alpha channel as a loss mask")
    pre.add_argument("--blip", action="store_true", help="caption the processed images with BLIP as they are written")
    pre.add_argument("--min-side", type=int, default=0, help="skip images smaller than this (default 64)")
    pre.set_defaults(run=_preprocess, command="dataset preprocess")

    caption = verbs.add_parser("caption", parents=[common], help="write <stem>.txt captions beside every image")
    caption.add_argument("prefix", metavar="PREFIX")
    caption.add_argument("--policy", choices=list(POLICIES), help="what to do with existing captions (default skip)")
    caption.add_argument("--class-phrase", default="", help='phrase every caption should start with ("a woman")')
    caption.add_argument("--beams", type=int, help="beam count (default 1)")
    caption.add_argument("--prefix-text", default="", help='conditional captioning prefix, e.g. "a photo of"')
    caption.add_argument("--caption-model", default="", help="BLIP model (default: the server's)")
    caption.set_defaults(run=_caption, command="dataset caption")

    lint = verbs.add_parser("lint", parents=[common], help="check a dataset; exit 1 only on error findings")
    lint.add_argument("prefix", metavar="PREFIX")
    lint.add_argument("--name", default="", help="the embedding's trigger word")
    lint.add_argument("--class-phrase", default="")
    lint.add_argument("--template", default="", help='template for the token budget ("a photo of [name], ...")')
    lint.add_argument("--vectors", type=int, default=0, help="vectors per token (default: recommended)")
    lint.add_argument("--size", type=int, default=0, help="training size (default: the family's)")
    lint.add_argument("--family", choices=list(FAMILIES), help=_FAMILY_HELP)
    lint.add_argument("--write-report", action="store_true", help="also store lint.json and lint.txt")
    lint.set_defaults(run=_lint, command="dataset lint")

    embedding = commands.add_parser("embedding", help="create embeddings")
    e_verbs = embedding.add_subparsers(required=True, metavar="VERB")
    create = e_verbs.add_parser("create", parents=[common], help="create a new embedding from init text")
    create.add_argument("name", metavar="NAME", help="the trigger word")
    create.add_argument("--init-text", default="", help='initialization text (default "*")')
    create.add_argument("--vectors", type=int, default=1, help="vectors per token, 1-75 (default 1)")
    create.add_argument("--model", default="", help="Stable Diffusion model (default: the trainer's)")
    create.add_argument("--destination", default="", help="store key (default embeddings/NAME.safetensors)")
    create.add_argument("--overwrite", action="store_true", help="replace an existing file")
    create.set_defaults(run=_create_embedding, command="embedding create")


def _upload(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        keys = upload_folder(ts.store, args.folder, args.prefix)
    if args.json:
        print_json({"prefix": folder_prefix(args.prefix), "keys": keys})
    else:
        for key in keys:
            print(key)
        print(f"uploaded {len(keys)} files to {folder_prefix(args.prefix)}")
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    options = cap.PreprocessOptions(
        size=args.size,
        flip_copies=args.flip,
        keep_alpha=args.keep_alpha,
        caption=args.blip,
        min_side=args.min_side,
        existing_caption=EXISTING_ACTIONS[args.existing_caption or "copy"],
        family=FAMILIES.get(args.family or "", common_pb2.MODEL_FAMILY_UNSPECIFIED),
    )
    if args.crop:
        options.crop = CROPS[args.crop]
    if args.split:
        options.split.enabled = True
    with open_client(args) as ts:
        stream = ts.caption.preprocess(
            source={"key": folder_prefix(args.source)},
            destination={"key": folder_prefix(args.destination)},
            options=options,
        )
        for message in stream:
            if args.json:
                print_json_line(message)
                continue
            kind = message.WhichOneof("event")
            if kind == "image":
                _print_outcome(message.image)
            elif kind == "summary":
                s = message.summary
                print(f"kept {s.kept}, skipped {s.skipped}, wrote {s.images_written} images to {s.dataset.key}")
    return 0


def _print_outcome(outcome: cap.ImageOutcome) -> None:
    if outcome.status == cap.IMAGE_STATUS_SKIPPED:
        r = outcome.reason
        print(f"skipped {outcome.source_key}: {r.code}: {r.message}" + (f" -> {r.suggestion}" if r.suggestion else ""))
        return
    images = [k for k in outcome.derived_keys if not k.endswith(".txt")]
    caption = f'  "{outcome.caption.caption}"' if outcome.caption.caption else ""
    print(f"kept    {outcome.source_key} -> {', '.join(images)}{caption}")
    for line in diagnostic_lines(outcome.notes, indent="        "):
        print(line)


def _caption(args: argparse.Namespace) -> int:
    options = cap.CaptionOptions(prefix=args.prefix_text)
    if args.caption_model:
        options.model.reference = args.caption_model
    if args.beams is not None:
        options.num_beams = args.beams
    if args.class_phrase:
        options.hygiene.class_phrase = args.class_phrase
    failed = 0
    with open_client(args) as ts:
        policy = POLICIES[args.policy] if args.policy else cap.EXISTING_CAPTION_POLICY_UNSPECIFIED
        stream = ts.caption.caption_dataset(dataset={"key": folder_prefix(args.prefix)}, options=options, policy=policy)
        for message in stream:
            kind = message.WhichOneof("event")
            if args.json:
                print_json_line(message)
            elif kind == "image":
                image = message.image
                action = cap.CaptionAction.Name(image.action).removeprefix("CAPTION_ACTION_").lower()
                text = image.error.message if image.error.message else image.result.caption
                print(f"{action:16} {image.image_key}  {text}")
            elif kind == "summary":
                s = message.summary
                print(f"written {s.written}, skipped {s.skipped}, failed {s.failed}")
            if kind == "summary":
                failed = message.summary.failed
    return 1 if failed else 0


def _lint(args: argparse.Namespace) -> int:
    with open_client(args) as ts:
        report = ts.caption.lint_dataset(
            dataset={"key": folder_prefix(args.prefix)},
            embedding_name=args.name,
            class_phrase=args.class_phrase,
            template=args.template,
            vectors_per_token=args.vectors,
            training_size=args.size,
            family=FAMILIES.get(args.family or "", common_pb2.MODEL_FAMILY_UNSPECIFIED),
            write_report=args.write_report,
        )
    if args.json:
        print_json(report)
    else:
        print(report.report_text.rstrip() or "no findings")
        if report.report.key:
            print(f"report stored at {report.report.key}")
    return 1 if has_errors(report.findings) else 0


def _create_embedding(args: argparse.Namespace) -> int:
    request = {
        "name": args.name,
        "init_text": args.init_text,
        "vectors_per_token": args.vectors,
        "overwrite": args.overwrite,
    }
    if args.model:
        request["model"] = {"reference": args.model}
    if args.destination:
        request["destination"] = {"key": args.destination}
    with open_client(args) as ts:
        embedding = ts.trainer.create_embedding(**request).embedding
    if args.json:
        print_json(embedding)
    else:
        dims = "+".join(str(d) for d in embedding.dims)
        print(f"{embedding.file.key}")
        print(f"  {embedding.name}: {embedding.vectors_per_token} vectors x {dims}, hash {embedding.short_hash}")
    return 0
