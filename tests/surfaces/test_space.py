"""python -m export space: a Hugging Face Space folder that runs the same app with nothing of this
checkout on its path, and cards publish --space (dry run; a bundle learned from restricted footage is
never published)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request

import pytest
from huggingface_hub import metadata_load

from cards.facts import CardError
from cards.publish import PublishConfig, publish
from export.space import SpaceConfig, SpaceError, write_space
from shqip_av.takedown import TRAINED_ON
from tests.surfaces.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def space(app_bundle, tmp_path_factory):
    return write_space(SpaceConfig(bundle=str(app_bundle), out=str(tmp_path_factory.mktemp("space") / "space")))


def test_the_space_folder_has_the_space_metadata_the_code_and_the_bundle(space, app_bundle):
    meta = metadata_load(space / "README.md")
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["sdk_version"]
    assert (space / "bundle" / "model_index.json").read_bytes() == (app_bundle / "model_index.json").read_bytes()
    for part in ("export/app.py", "export/pipeline.py", "shqip_av/media.py", "train/lipsync/adapt.py"):
        assert (space / part).is_file()
    requirements = (space / "requirements.txt").read_text().split()
    assert any(r.startswith("gradio==") for r in requirements) and "torch==2.13.0" in requirements
    assert "ffmpeg" in (space / "packages.txt").read_text()
    assert "`bundle/`" in (space / "README.md").read_text()


def test_the_space_app_starts_with_the_folder_alone_on_its_path(space, tmp_path):
    moved = tmp_path / "elsewhere" / "space"
    shutil.copytree(space, moved)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "GRADIO_"))}
    # -S: no site-packages .pth files, so not the editable install of this checkout either; the
    # third-party packages come from PYTHONPATH, the project's code only from the folder
    env.update(
        PYTHONPATH=sysconfig.get_paths()["purelib"],
        GRADIO_SERVER_PORT=str(port),
        SHQIP_AV_APP_WORK=str(tmp_path / "work"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-S", "app.py"], cwd=moved, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        config = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as answer:
                    config = json.loads(answer.read())
                break
            except OSError:
                time.sleep(0.5)
        assert config is not None, proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "no answer"
        assert app_bundle_name(space) in json.dumps(config)  # the app loaded the bundle in bundle/
    finally:
        proc.terminate()
        proc.wait(30)
    assert (tmp_path / "work" / "jobs").is_dir()  # it wrote where it was told


def app_bundle_name(space) -> str:
    return json.loads((space / "bundle" / "model_index.json").read_text())["name"]


def test_publish_space_dry_run_lists_the_folder_and_a_restricted_bundle_is_refused(space, tmp_path):
    summary = publish(PublishConfig(space=str(space), repo="user/dubbing", dry_run=True))
    names = {name for name, _ in summary["files"]}
    assert {"app.py", "README.md", "requirements.txt", "bundle/model_index.json", "export/app.py"} <= names
    assert not any("__pycache__" in n or n.startswith(".") for n in names)
    assert not summary["published"]

    restricted = tmp_path / "restricted"
    shutil.copytree(space, restricted)
    (restricted / "bundle" / TRAINED_ON).write_text(json.dumps({"restrictions": ["third-party test footage"]}))
    with pytest.raises(CardError, match="restriction 'third-party test footage'.*not published"):
        publish(PublishConfig(space=str(restricted), repo="user/dubbing", dry_run=True))


def test_bad_space_input_is_one_line_and_nothing_is_written(tmp_path, app_bundle):
    with pytest.raises(SpaceError, match="give --bundle"):
        write_space(SpaceConfig(out=str(tmp_path / "a")))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "app.py").write_text("mine\n")
    with pytest.raises(SpaceError, match="app.py, which export space did not write"):
        write_space(SpaceConfig(bundle=str(app_bundle), out=str(taken)))
    assert (taken / "app.py").read_text() == "mine\n" and sorted(p.name for p in taken.iterdir()) == ["app.py"]
    with pytest.raises(CardError, match="not a Space folder"):
        publish(PublishConfig(space=str(taken), repo="user/dubbing", dry_run=True))
