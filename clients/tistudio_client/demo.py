"""`make demo`: the main job on the embedded default models, end to end through the services.

The defaults are the toy world's trained models (`services/toyworld/weights`: a toy SD1.x and a toy BLIP), so the
captions are right and the previews show the sample concept appear over the steps; `--sd-model` and
`--caption-model` take any other model reference (a real SD1.5, SD2 or SDXL folder or checkpoint, a BLIP folder;
the family is detected from the model), and `--models` names the folder `make models` built, whose tiny CLIP scores
savepoints. `--max-steps` and `--every` shorten the run (e.g. on the tiny SDXL: `--sd-model models/tiny-sdxl`).

Starts caption, trainer and preview on loopback with a local store and those models, waits until all three
report SERVING, then runs the whole workflow through the SDK (`demo_flow`): sample photos -> preprocess -> caption
-> lint -> plan -> train (recipe seed-a, scaled down) with previews and savepoints -> contact sheets and the final
exam -> export in every format the family has (SDXL pairs have no A1111 .pt form). Finally it stops the services
with SIGTERM and checks that each exited cleanly. Everything lands in the output folder (see the printed list); the
store and one log per service too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from services.toyworld import TOY_BLIP, TOY_SD
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client.client import Tistudio
from tistudio_client.demo_flow import DemoSettings, run_demo_flow
from tistudio_client.errors import TistudioError
from tistudio_client.local import LocalTrio, StartupError, TrioConfig

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder built by `make models`")
    parser.add_argument("--sd-model", default=str(TOY_SD), help="Stable Diffusion model (default: the toy SD)")
    parser.add_argument("--caption-model", default=str(TOY_BLIP), help="BLIP model (default: the toy BLIP)")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where everything lands")
    parser.add_argument("--max-steps", type=int, default=DemoSettings.max_steps, help="training steps (default 300)")
    parser.add_argument("--every", type=int, default=DemoSettings.every, help="preview and savepoint interval")
    args = parser.parse_args(argv)
    if not 1 <= args.every <= args.max_steps:
        parser.error(f"--every {args.every} must be between 1 and --max-steps {args.max_steps}")
    settings = replace(DemoSettings(), max_steps=args.max_steps, every=args.every)

    out = args.out.resolve()
    store = out / "store"
    if store.is_dir():
        shutil.rmtree(store)  # a fresh store each run: the demo's job ids and datasets start from nothing
    store.mkdir(parents=True, exist_ok=True)
    config = TrioConfig(
        store_url=store.as_uri(),
        caption_model=_reference(args.caption_model),
        sd_model=_reference(args.sd_model),
        clip_model=str((args.models / "tiny-clip").resolve()),
        cache_dir=str(out / "cache"),
        log_dir=out / "logs",
        # Nothing routes traffic to these loopback services, so a short drain is enough to show the sequence.
        extra_env={"TISTUDIO_DRAIN_SECONDS": "0.5"},
    )
    started = time.monotonic()
    trio = LocalTrio(config)
    try:
        trio.start()
        health = trio.wait_serving()
    except StartupError as exc:
        trio.stop()
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    ready_seconds = time.monotonic() - started
    print(f"three services SERVING after {ready_seconds:.1f} s (models loaded):")
    for result in health.values():
        print(f"  {result.name:8} {result.address:21} {result.status:8} serves {', '.join(result.services)}")
    succeeded = False
    try:
        with Tistudio(**trio.addresses, store_url=config.store_url) as client:
            result = run_demo_flow(client, out, settings)
        succeeded = result.job.state == tr.JOB_STATE_SUCCEEDED
    except TistudioError as exc:
        print(f"demo: {exc.code.name}: {exc.message}", file=sys.stderr)
    exit_codes = trio.stop()
    print("stopped with SIGTERM: " + ", ".join(f"{name} exit {code}" for name, code in exit_codes.items()))

    report = {
        "ready_seconds": round(ready_seconds, 2),
        "health": [asdict(result) for result in health.values()],
        "exit_codes": exit_codes,
        "store": config.store_url,
    }
    (out / "health.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"outputs in {out}:")
    for entry in sorted(out.iterdir()):
        print(f"  {entry.name}{'/' if entry.is_dir() else ''}")
    clean = all(code == 0 for code in exit_codes.values())
    if not clean:
        print("demo: a service did not exit cleanly; see logs/", file=sys.stderr)
    if not succeeded:
        print("demo: the workflow did not finish; see the messages above and logs/", file=sys.stderr)
    return 0 if clean and succeeded else 1


def _reference(model: str) -> str:
    """A folder or file given by path is passed on absolute (the services run elsewhere); a name as it is."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else model


if __name__ == "__main__":
    sys.exit(main())
