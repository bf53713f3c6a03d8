"""Shared fixtures live in tests/support/: real S3 (moto) and Hatchet servers, and an isolated
experiment registry."""

pytest_plugins = [
    "tests.support.s3",
    "tests.support.hatchet",
    "tests.support.registry",
    "tests.support.settings",
]
