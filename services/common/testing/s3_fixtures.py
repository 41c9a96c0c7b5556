"""pytest plugin: a real S3-protocol server on loopback, and a fresh bucket per test.

By default a moto server runs in a thread of the test process on 127.0.0.1 and an ephemeral port, once per
session. To test against a real server instead (e.g. MinIO), set TISTUDIO_TEST_S3_ENDPOINT (`host:port` or
`http(s)://host:port`) with TISTUDIO_TEST_S3_ACCESS_KEY and TISTUDIO_TEST_S3_SECRET_KEY; the credentials must
be allowed to create and delete buckets. Tests that use these fixtures should be marked `pytest.mark.s3`.

    @pytest.mark.s3
    def test_something(s3_store_url):
        store = open_store(s3_store_url.url, env=s3_store_url.env)
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import pytest
from minio import Minio

from services.common.storage.url import s3_settings_from_env

__all__ = ["S3Endpoint", "S3StoreURL", "s3_endpoint", "s3_store_url"]

# moto accepts any credentials; these only have to be well-formed.
_MOTO_ACCESS_KEY, _MOTO_SECRET_KEY = "tistudio-test", "tistudio-test-secret"


@dataclass(frozen=True)
class S3Endpoint:
    endpoint: str  # as TISTUDIO_S3_ENDPOINT takes it, e.g. "http://127.0.0.1:40123"
    access_key: str
    secret_key: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """The environment `open_store` needs to reach this server (and nothing from the real environment)."""
        return {
            "TISTUDIO_S3_ENDPOINT": self.endpoint,
            "TISTUDIO_S3_ACCESS_KEY": self.access_key,
            "TISTUDIO_S3_SECRET_KEY": self.secret_key,
        }

    def client(self) -> Minio:
        """A plain minio client, for set-up and for looking behind a store's back."""
        settings = s3_settings_from_env(self.env())
        return Minio(settings.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=settings.secure)


class S3StoreURL(NamedTuple):
    url: str  # "s3://<fresh bucket>"
    env: dict[str, str]  # pass as open_store(url, env=env)

    @property
    def bucket(self) -> str:
        return self.url.removeprefix("s3://").partition("/")[0]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    external = os.environ.get("TISTUDIO_TEST_S3_ENDPOINT")
    if external:
        yield S3Endpoint(
            endpoint=external,
            access_key=os.environ.get("TISTUDIO_TEST_S3_ACCESS_KEY", ""),
            secret_key=os.environ.get("TISTUDIO_TEST_S3_SECRET_KEY", ""),
        )
        return
    # Imported here: moto is slow to import and most test runs never need it.
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO; keep warnings and errors only, so failing tests stay readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Endpoint(endpoint=f"http://{host}:{port}", access_key=_MOTO_ACCESS_KEY, secret_key=_MOTO_SECRET_KEY)
    finally:
        server.stop()


@pytest.fixture
def s3_store_url(s3_endpoint: S3Endpoint) -> Iterator[S3StoreURL]:
    """A new, empty bucket for this test; emptied and removed afterwards."""
    bucket = f"tistudio-test-{uuid.uuid4().hex[:16]}"
    client = s3_endpoint.client()
    client.make_bucket(bucket)
    yield S3StoreURL(url=f"s3://{bucket}", env=s3_endpoint.env())
    for found in client.list_objects(bucket, recursive=True):
        client.remove_object(bucket, found.object_name)
    client.remove_bucket(bucket)
