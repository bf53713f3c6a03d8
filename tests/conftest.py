"""Shared fixtures. The S3 endpoint fixtures live in fixtures_s3.py."""

pytest_plugins = ["fixtures_s3", "fixtures_hatchet"]
