"""`make demo`: the main job on the embedded default models, end to end through the services.

Today the main job is the service trio itself: start caption, trainer and preview on loopback with a local store
and the tiny models, wait until all three have loaded their models and report SERVING, show what each serves
(gRPC reflection), then stop them with SIGTERM and check that each drained and exited cleanly. Everything lands in
the output folder: the store, one log per service and `health.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tistudio_client.local import LocalTrio, StartupError, TrioConfig

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder built by `make models`")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where everything lands")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    store = out / "store"
    store.mkdir(parents=True, exist_ok=True)
    config = TrioConfig(
        store_url=store.as_uri(),
        caption_model=str((args.models / "tiny-blip").resolve()),
        sd_model=str((args.models / "tiny-sd").resolve()),
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
    exit_codes = trio.stop()
    print("stopped with SIGTERM: " + ", ".join(f"{name} exit {code}" for name, code in exit_codes.items()))

    report = {
        "ready_seconds": round(ready_seconds, 2),
        "health": [asdict(result) for result in health.values()],
        "exit_codes": exit_codes,
        "store": config.store_url,
    }
    (out / "health.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"outputs in {out}: health.json, logs/ (one JSON log per service), store/")
    clean = all(code == 0 for code in exit_codes.values())
    if not clean:
        print("demo: a service did not exit cleanly; see logs/", file=sys.stderr)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
