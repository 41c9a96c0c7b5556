"""Structured logs: one JSON object per line on stdout, so the cluster's log shipper needs no parser.

Every line has `ts` (ISO-8601, UTC), `level`, `logger`, `service` and `msg`; fields passed with
`logger.info("...", extra={"job_id": ...})` are added as they are; an exception becomes one `exc` string
(the formatted traceback) instead of a multi-line dump that a line-based shipper would cut apart.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys

__all__ = ["configure_logging", "route_library_logs", "JsonFormatter"]

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; values JSON cannot encode are written with `str()`."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _JsonHandler(logging.StreamHandler):
    """Marker type, so a second `configure_logging` call finds and replaces the handler it added before."""


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of the process to stdout as JSON lines tagged with `service`.

    Idempotent: calling it again (tests, a CLI that configures twice) replaces the previous handler and
    level instead of printing each line twice. Handlers added by others (pytest's capture) are left alone.
    """
    name = level.upper()
    if name not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
        handler.close()
    handler = _JsonHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(name)
    # gRPC's own logger is chatty at INFO about internals; our interceptors log what matters per call.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, root.level))


def route_library_logs() -> None:
    """Make transformers and diffusers log through the root logger (so as JSON) and stop their progress bars.

    Both libraries install their own stderr handler and do not propagate; in a service that would put
    free-text lines and tqdm bars among the JSON lines. Call after `configure_logging`, in service processes.
    """
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for library in (transformers_logging, diffusers_logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()
