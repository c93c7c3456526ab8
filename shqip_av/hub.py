"""Talking to the Hugging Face Hub: the errors an upload can meet, said in one line.

The token itself is never handled here: huggingface_hub reads it ($HF_TOKEN or the login) and
sends it in the Authorization header; messages built here never include it.
"""

from __future__ import annotations

import importlib


def upload_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the Hub (or the network) said no", not a bug of ours."""
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError, ValueError]
    # huggingface_hub's HTTP client has changed between releases (requests, httpx, httpx2)
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def describe(error: BaseException) -> str:
    """First line of the error, with a hint for refused credentials."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    if status in (401, 403):
        text += " (is the token set, with write access? $HF_TOKEN or `hf auth login`)"
    return text
