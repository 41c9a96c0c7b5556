"""The `tistudio` command line.

tistudio serve caption|trainer|preview   run one service in the foreground (settings from TISTUDIO_* env)
tistudio up                              run all three on loopback with a local store; prints addresses
tistudio health                          report the health of all three; exit 1 unless all are SERVING
tistudio dataset upload|preprocess|caption|lint    get a training set into shape       (cli_dataset)
tistudio embedding create                          a new embedding from init text      (cli_dataset)
tistudio train plan|start                          a TrainingSpec from flags           (cli_train)
tistudio watch | pause | resume | cancel | jobs    follow and steer jobs               (cli_jobs)
tistudio generate | sheet progress|exam | export   images and files out                (cli_render)

Service commands take --caption/--trainer/--preview HOST:PORT, --token, --store, --json and --timeout (see
`cli_common`). Exit status: 0 done, 1 the server refused or the job did not succeed (the server's message is
printed as "tistudio <command>: <CODE>: <message>"), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from tistudio_client import cli_dataset, cli_jobs, cli_render, cli_train
from tistudio_client.cli_common import DEFAULT_ADDRESSES, connection_options
from tistudio_client.errors import TistudioError
from tistudio_client.health import SERVICE_NAMES, ServiceHealth, check_service
from tistudio_client.local import LocalTrio, StartupError, TrioConfig

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except TistudioError as err:
        print(f"tistudio {getattr(args, 'command', '')}: {_error_text(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tistudio {getattr(args, 'command', '')}: interrupted", file=sys.stderr)
        return 130


def _error_text(err: TistudioError) -> str:
    text = f"{err.code.name}: {err.message}"
    extras = [f"field {err.field}"] if err.field else []
    if err.reason and err.reason != err.code.name:
        extras.append(f"reason {err.reason}")
    if err.incident:
        extras.append(f"incident {err.incident}")
    return f"{text} ({', '.join(extras)})" if extras else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tistudio", description="Textual-inversion studio for Stable Diffusion.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=list(SERVICE_NAMES))
    serve.set_defaults(run=_serve, command="serve")

    up = commands.add_parser("up", help="run caption, trainer and preview on loopback with a local store")
    up.add_argument("--store", default="tistudio-store", help="local store directory (default ./tistudio-store)")
    up.add_argument("--caption-model", required=True, help="BLIP model reference for the caption service")
    up.add_argument("--sd-model", default="", help="Stable Diffusion model the trainer and preview preload")
    up.add_argument("--clip-model", default="", help="CLIPModel the preview service scores savepoints with")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument(
        "--ports",
        default="50051,50052,50053",
        help="caption,trainer,preview gRPC ports (default 50051,50052,50053; 0 picks free ones)",
    )
    up.set_defaults(run=_up, command="up")

    health = commands.add_parser("health", help="report the health of the three services")
    for name, address in DEFAULT_ADDRESSES.items():
        health.add_argument(f"--{name}", default=address, metavar="HOST:PORT", help=f"default {address}")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds per check")
    health.add_argument("--json", action="store_true", help="print JSON for scripts")
    health.set_defaults(run=_health, command="health")

    common = connection_options()
    for module in (cli_dataset, cli_train, cli_jobs, cli_render):
        module.register(commands, common)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from services.common.runtime import serve  # the server side is only needed by this command
    from services.definitions import DEFINITIONS

    return serve(DEFINITIONS[args.service])


def _up(args: argparse.Namespace) -> int:
    try:
        ports = dict(zip(SERVICE_NAMES, (int(p) for p in args.ports.split(",")), strict=True))
    except ValueError:
        print(f"--ports {args.ports!r}: give three port numbers, e.g. 50051,50052,50053", file=sys.stderr)
        return 2
    store = Path(args.store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    config = TrioConfig(
        store_url=store.as_uri(),
        caption_model=args.caption_model,
        sd_model=args.sd_model,
        clip_model=args.clip_model,
        host=args.host,
        ports=ports,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    trio = LocalTrio(config)
    try:
        trio.start()
        trio.wait_serving()
    except StartupError as exc:
        print(f"tistudio up: {exc}", file=sys.stderr)
        trio.stop()
        return 1
    for name, address in trio.addresses.items():
        print(f"{name:8} {address}  metrics :{trio.metrics_ports[name]}", flush=True)
    print(f"store    {config.store_url}\nall three SERVING; Ctrl-C stops them", flush=True)
    stop.wait()
    codes = trio.stop()
    return 0 if all(code == 0 for code in codes.values()) else 1


def _health(args: argparse.Namespace) -> int:
    results = [check_service(name, getattr(args, name), timeout=args.timeout) for name in SERVICE_NAMES]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            print(_health_line(r))
    return 0 if all(r.serving for r in results) else 1


def _health_line(result: ServiceHealth) -> str:
    line = f"{result.name:8} {result.address:21} {result.status}"
    return f"{line}  {result.detail}" if result.detail else line


if __name__ == "__main__":
    sys.exit(main())
