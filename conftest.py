"""Fixtures shared by every test layer, kept in plugins next to the code they exercise."""

pytest_plugins = [
    "services.common.testing.s3_fixtures",
    "services.common.testing.model_fixtures",
]
