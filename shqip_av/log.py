"""Logging with token redaction, and progress bars for long work.

Every stage logs through ``get_logger``. A filter on the root handler masks anything that looks
like a Hugging Face or bearer token, so a URL or exception message carrying one never reaches a
log file or the terminal.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
import time
import warnings
from typing import Callable, Iterable, Iterator, TypeVar

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


# Library warnings every run would print, which say nothing the user can act on
_KNOWN_WARNINGS = [
    (r".*torchaudio.*(deprecated|backend).*", Warning),
    (r".*pkg_resources is deprecated.*", Warning),
    (r".*TypedStorage is deprecated.*", UserWarning),
    (r".*SymbolDatabase.GetPrototype\(\) is deprecated.*", UserWarning),
    (r".*`torch_dtype` is deprecated.*", Warning),
    (r".*`is_gradient_checkpointing` is deprecated.*", FutureWarning),  # raised inside transformers' Trainer
]


def interactive() -> bool:
    """True when stderr is a terminal: progress bars then; periodic lines in logs otherwise."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def use_root_caches(root: str | os.PathLike) -> None:
    """Point third-party caches (matplotlib's config, Hugging Face's modules and datasets, numba)
    into <root>/cache/ so that a stage writes nothing outside the dataset root. Only variables the
    user has not set are changed, and it must run before those libraries are imported."""
    from pathlib import Path

    cache = Path(root).expanduser().resolve() / "cache"
    for var, sub in (
        ("MPLCONFIGDIR", "matplotlib"),
        ("HF_MODULES_CACHE", "hf_modules"),
        ("HF_DATASETS_CACHE", "datasets"),
        ("NUMBA_CACHE_DIR", "numba"),
    ):
        os.environ.setdefault(var, str(cache / sub))


def setup_logging(verbose: bool = False, root: str | os.PathLike | None = None) -> None:
    """Configure the root logger once: one line per message on stderr, tokens redacted; quiet
    known library chatter; in a non-interactive log, no progress bars from libraries either."""
    if root is not None:
        use_root_caches(root)
    for pattern, category in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    if not interactive():
        for var in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
            os.environ.setdefault(var, "1")
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
    for noisy in ("urllib3", "filelock", "matplotlib", "PIL", "fsspec", "httpx", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._shqip_av_configured = True  # type: ignore[attr-defined]


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


# Someone other than the terminal who wants to know how far work has come (the dubbing app's page):
# called with (what, done, total or None) as steps start and progress bars move, in the thread
# doing the work. Set it for a block with ``listening(callback)``.
_listener: contextvars.ContextVar[Callable[[str, int, int | None], None] | None] = contextvars.ContextVar(
    "progress_listener", default=None
)


@contextlib.contextmanager
def listening(callback: Callable[[str, int, int | None], None]):
    """Within the block, ``progress`` bars and ``StepTimes`` steps also report to ``callback``."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def _listened(items: Iterable[T], desc: str, total: int | None, listen) -> Iterator[T]:
    listen(desc, 0, total)
    last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= 0.25:  # a page needs a few updates a second, not one per frame
            last = now
            listen(desc, done, total)
    listen(desc, done, total)


def progress(
    items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it", every: float = 30.0
) -> Iterator[T]:
    """A progress bar on a terminal; in a log (stderr not a terminal) one line every ``every``
    seconds and one at the end, instead of a line per update. A listener (``listening``) hears
    it too."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    listen = _listener.get()
    if listen is not None:
        items = _listened(items, desc, total, listen)
    if interactive():
        yield from tqdm(items, desc=desc, total=total, unit=unit, dynamic_ncols=True, file=sys.stderr)
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    log = logging.getLogger("shqip_av.progress")
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every:
            last = now
            log.info("%s: %d%s %s (%.0f s)", desc, done, f"/{total}" if total else "", unit, now - start)
    if done:
        log.info("%s: %d%s %s done in %.0f s", desc, done, f"/{total}" if total else "", unit, time.monotonic() - start)


@contextlib.contextmanager
def native_stderr_filtered(
    noise: tuple[str, ...] = ("W0000 ", "I0000 ", "INFO: Created TensorFlow", "WARNING: Logging before InitGoogle"),
):
    """Run a block with file descriptor 2 captured, then pass on every line but ``noise``.
    MediaPipe's C++ logging (glog, TF Lite) writes there directly, bypassing Python's logging."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not line.startswith(noise):
                    print(line, file=sys.stderr)


class StepTimes:
    """Wall seconds per named step of one run (filter's per-video stats, the dub's report.json; make
    bench reads them)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        listen = _listener.get()
        if listen is not None:
            listen(step, 0, None)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start

    @contextlib.contextmanager
    def excluding(self, step: str, *inner: str):
        """Time a block as ``step``, less what the ``inner`` steps timed within it (the decode
        waited for inside a landmark pass is decode, not landmarks)."""
        before = sum(self.seconds.get(k, 0.0) for k in inner)
        start = time.perf_counter()
        try:
            yield
        finally:
            nested = sum(self.seconds.get(k, 0.0) for k in inner) - before
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start - nested

    def iterate(self, items, step: str):
        """``items``, with the time spent waiting for each one counted as ``step`` (a decoder
        that runs beside the consumer costs only the waits it causes). Closing this closes
        ``items``."""
        it = iter(items)
        try:
            while True:
                start = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start
                yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}
