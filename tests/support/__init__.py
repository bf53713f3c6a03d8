"""Test support: fixtures (real S3 and Hatchet servers, an isolated registry) and helpers."""
