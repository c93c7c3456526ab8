"""Logging with token redaction, and progress bars for long work.

Every stage logs through ``get_logger``. A filter on the root handler masks anything that looks
like a Hugging Face or bearer token, so a URL or exception message carrying one never reaches a
log file or the terminal.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_TOKEN_PATTERNS = [
    re.compile(r"hf_[A-Za-z0-9]{20,}"),
    re.compile(r"(?i)(authorization:\s*bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:token|access_token|api_key)=)[^&\s'\"]+"),
]


def redact(text: str) -> str:
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once: one line per message on stderr, tokens redacted."""
    root = logging.getLogger()
    if getattr(root, "_shqip_av_configured", False):
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # third-party chatter stays at warnings unless asked for
    for noisy in ("urllib3", "filelock", "matplotlib", "PIL", "fsspec", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._shqip_av_configured = True  # type: ignore[attr-defined]


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """A progress bar on stderr for long loops (hidden when stderr is not a terminal)."""
    return iter(tqdm(items, desc=desc, total=total, unit=unit, dynamic_ncols=True,
                     disable=None, file=sys.stderr))
