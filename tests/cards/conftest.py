"""The card tests use demo_root and demo_run from tests/conftest.py."""
