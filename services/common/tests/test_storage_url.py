"""Opening stores from URLs, and the S3 settings read from the environment."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.storage import open_store, s3_settings_from_env


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com/x", "'file:///absolute/path' or 's3://bucket/optional/prefix'"),
        ("/just/a/path", "'file:///absolute/path' or 's3://bucket/optional/prefix'"),
        ("file://host/path", "three slashes"),
        ("file:relative/path", "three slashes"),
        ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("s3://ab", "not a valid S3 bucket name"),
        ("s3://bucket/../x", "'..'"),
    ],
)
def test_malformed_store_urls(url: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_store(url, env={})
    assert url in str(caught.value) and words in str(caught.value)


def test_credentials_in_s3_urls_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidArgument) as caught:
        open_store("s3://key:hunter2@bucket/x", env={})
    assert "hunter2" not in str(caught.value) and "TISTUDIO_S3_ACCESS_KEY" in str(caught.value)


def test_s3_settings_from_env() -> None:
    assert s3_settings_from_env({}).endpoint_url == "https://s3.amazonaws.com"
    minio = s3_settings_from_env(
        {
            "TISTUDIO_S3_ENDPOINT": "http://minio:9000",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "TISTUDIO_S3_REGION": "eu-west-1",
        }
    )
    assert (minio.endpoint, minio.secure, minio.access_key, minio.region) == ("minio:9000", False, "id", "eu-west-1")
    assert "secret" not in repr(minio)
    assert s3_settings_from_env({"TISTUDIO_S3_ENDPOINT": "minio:9000", "TISTUDIO_S3_SECURE": "false"}).secure is False
    both = {"TISTUDIO_S3_ACCESS_KEY": "mine", "TISTUDIO_S3_SECRET_KEY": "s", "AWS_ACCESS_KEY_ID": "aws"}
    assert s3_settings_from_env(both).access_key == "mine"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TISTUDIO_S3_ENDPOINT": "ftp://minio:9000"}, "TISTUDIO_S3_ENDPOINT"),
        ({"TISTUDIO_S3_ENDPOINT": "minio:9000/path"}, "TISTUDIO_S3_ENDPOINT"),
        ({"TISTUDIO_S3_SECURE": "maybe"}, "TISTUDIO_S3_SECURE"),
        ({"TISTUDIO_S3_ENDPOINT": "http://minio:9000", "TISTUDIO_S3_SECURE": "true"}, "TISTUDIO_S3_SECURE"),
        ({"TISTUDIO_S3_ACCESS_KEY": "id"}, "TISTUDIO_S3_SECRET_KEY"),
        ({"TISTUDIO_S3_CA_BUNDLE": "/no/such/ca.pem"}, "TISTUDIO_S3_CA_BUNDLE"),
    ],
)
def test_bad_s3_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(InvalidArgument, match=variable):
        open_store("s3://bucket", env=env)
