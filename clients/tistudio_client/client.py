"""`Tistudio`: one object holding the three channels, the shared store and the workflow helpers.

    with Tistudio.from_env() as ts:                                   # or Tistudio(caption="host:50051", ...)
        prepared = ts.prepare_dataset("photos/anna", "datasets/anna", class_phrase="a woman")
        job = ts.start(spec={"embedding": {...}, "dataset": prepared.dataset, "recipe": "seed-a"})
        for event in ts.watch(job.job_id): ...
        ts.export(job.job_id, "out/", formats=["safetensors", "pt"])

The typed per-service clients are `ts.caption`, `ts.trainer` and `ts.preview` (see `service_clients`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from services.common.errors import TistudioError as StoreError
from services.common.storage import Store, open_store
from tistudio.common.v1 import common_pb2
from tistudio.trainer.v1 import trainer_pb2 as tr
from tistudio_client import jobs, workflow
from tistudio_client.calls import DEFAULT_RETRY, QUICK_TIMEOUT, Caller, RetryPolicy
from tistudio_client.channels import open_channel
from tistudio_client.errors import ConfigurationError
from tistudio_client.service_clients import CaptionClient, PreviewClient, TrainerClient

__all__ = ["Tistudio"]

_SERVICES = ("caption", "trainer", "preview")


class Tistudio:
    """Clients for the services whose addresses are given; using one that was not configured raises
    `ConfigurationError` naming the argument and the environment variable to set."""

    def __init__(
        self,
        caption: str | None = None,
        trainer: str | None = None,
        preview: str | None = None,
        *,
        token: str | None = None,
        store_url: str | None = None,
        timeout: float = QUICK_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.caller = Caller(token=token, timeout=timeout, retry=retry)
        given = zip(_SERVICES, (caption, trainer, preview), strict=True)
        self.addresses = {name: address for name, address in given if address}
        self._channels = {name: open_channel(a, credentials=credentials) for name, a in self.addresses.items()}
        self.store_url = store_url or None
        self._store: Store | None = None
        self._caption = CaptionClient(self._channels["caption"], self.caller) if caption else None
        self._trainer = TrainerClient(self._channels["trainer"], self.caller) if trainer else None
        self._preview = PreviewClient(self._channels["preview"], self.caller) if preview else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: Any) -> Tistudio:
        """Read TISTUDIO_{CAPTION,TRAINER,PREVIEW}_ADDRESS, TISTUDIO_TOKEN, TISTUDIO_STORE_URL,
        TISTUDIO_TIMEOUT_SECONDS and TISTUDIO_TLS_CA (a PEM file: use TLS); keyword arguments win."""
        kwargs: dict[str, Any] = {name: env.get(f"TISTUDIO_{name.upper()}_ADDRESS") or None for name in _SERVICES}
        kwargs["token"] = env.get("TISTUDIO_TOKEN") or None
        kwargs["store_url"] = env.get("TISTUDIO_STORE_URL") or None
        if env.get("TISTUDIO_TIMEOUT_SECONDS"):
            try:
                kwargs["timeout"] = float(env["TISTUDIO_TIMEOUT_SECONDS"])
            except ValueError:
                raise ConfigurationError(
                    f"TISTUDIO_TIMEOUT_SECONDS={env['TISTUDIO_TIMEOUT_SECONDS']!r} is not a number of seconds"
                ) from None
        if env.get("TISTUDIO_TLS_CA"):
            try:
                root = Path(env["TISTUDIO_TLS_CA"]).read_bytes()
            except OSError as err:
                raise ConfigurationError(f"TISTUDIO_TLS_CA: cannot read {env['TISTUDIO_TLS_CA']}: {err}") from err
            kwargs["credentials"] = grpc.ssl_channel_credentials(root_certificates=root)
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def caption(self) -> CaptionClient:
        return self._need(self._caption, "caption")

    @property
    def trainer(self) -> TrainerClient:
        return self._need(self._trainer, "trainer")

    @property
    def preview(self) -> PreviewClient:
        return self._need(self._preview, "preview")

    @property
    def store(self) -> Store:
        """The store the services share, opened on first use from `store_url`."""
        if self._store is None:
            if not self.store_url:
                raise ConfigurationError(
                    "no store URL: pass store_url='file:///...' or 's3://bucket/prefix', or set TISTUDIO_STORE_URL"
                )
            try:
                self._store = open_store(self.store_url)
            except StoreError as err:
                raise ConfigurationError(f"store URL: {err.message}", reason=err.reason) from err
        return self._store

    @property
    def has_store(self) -> bool:
        return bool(self.store_url)

    @staticmethod
    def _need(client: Any, name: str) -> Any:
        if client is None:
            raise ConfigurationError(
                f"no {name} address: pass {name}='host:port' or set TISTUDIO_{name.upper()}_ADDRESS"
            )
        return client

    # Workflow helpers: thin wrappers so that `ts.<verb>` reads as the steps of a run (see `workflow`, `jobs`).

    def prepare_dataset(self, local_dir: str | os.PathLike[str], prefix: str, **options: Any) -> workflow.Prepared:
        return workflow.prepare_dataset(self, local_dir, prefix, **options)

    def plan(self, spec: tr.TrainingSpec | None = None, **spec_fields: Any) -> tr.PlanTrainingResponse:
        return workflow.plan(self.trainer, spec, **spec_fields)

    def start(
        self, spec: tr.TrainingSpec | None = None, *, request_id: str | None = None, **spec_fields: Any
    ) -> tr.Job:
        return workflow.start(self.trainer, spec, request_id=request_id, **spec_fields)

    def watch(
        self, job_id: str, after_sequence: int = 0, *, timeout: float | None = None
    ) -> Iterator[tr.WatchJobResponse]:
        return jobs.watch(self.trainer, job_id, after_sequence, timeout=timeout)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[tr.WatchJobResponse], None] | None = None,
    ) -> tr.Job:
        return jobs.wait(self.trainer, job_id, timeout=timeout, on_event=on_event)

    def export(
        self,
        source: str | tr.Job | common_pb2.StorageRef,
        local_dir: str | os.PathLike[str],
        formats: Iterable[str | int] = ("safetensors",),
        *,
        step: int = 0,
        name: str = "",
    ) -> list[Path]:
        return workflow.export(self, source, local_dir, formats, step=step, name=name)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> Tistudio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
