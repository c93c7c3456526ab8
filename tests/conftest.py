"""Shared fixtures. Tests use real ffmpeg, real yt-dlp (against a local HTTP server on
127.0.0.1), real MediaPipe, and the real clips and models in ../shared (skipped with a reason
when ../shared is absent)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VIDEOS = SHARED / "testdata" / "videos"
MODELS = SHARED / "models"

# Offline by default (DESIGN.md §5), and model files from ../shared/models.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("SHQIP_AV_OFFLINE", "1")
if MODELS.is_dir():
    os.environ.setdefault("SHQIP_AV_MODELS", str(MODELS))


def shared_video(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"needs ../shared/testdata/videos/{name} (the shared test data is not present)")
    return path


def shared_model(name: str) -> Path:
    path = MODELS / name
    if not path.is_file():
        pytest.skip(f"needs ../shared/models/{name} (the shared model files are not present)")
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # clients that hang up early are expected
        pass


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (random port); yields (folder, base_url)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    """The embedded sample clips, generated once per test session."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from collect.sample import write_sample

    root = tmp_path_factory.mktemp("sample-root")
    write_sample(root)
    return root


class _RefusingHub(http.server.BaseHTTPRequestHandler):
    """Answers every request with 403 and remembers (method, path, lower-cased headers)."""

    def _refuse(self):
        self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = b'{"error": "refused by the test server"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_hub():
    """A 'Hub' on 127.0.0.1 that refuses everything: (endpoint URL for HF_ENDPOINT, requests seen)."""
    server = _QuietServer(("127.0.0.1", 0), _RefusingHub)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", server.seen
    server.shutdown()
    server.server_close()
