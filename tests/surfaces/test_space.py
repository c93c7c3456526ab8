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


# ------------------------------------------------------------------ attacks through the bundle and --out
def _hostile_bundle(app_bundle, tmp_path, name: str):
    bundle = tmp_path / "hostile-bundle"
    shutil.copytree(app_bundle, bundle)
    index = json.loads((bundle / "model_index.json").read_text())
    index["name"] = name
    (bundle / "model_index.json").write_text(json.dumps(index))
    return bundle


def test_a_hostile_bundle_name_lands_in_app_py_and_the_readme_as_text_never_as_code(app_bundle, tmp_path):
    """A name that closes the string it is written into: app.py, when run (as the Space runs it,
    its module level), executes nothing of it; the README's front matter still parses, with the
    name as the title's text. A name over several lines is refused."""
    name = 'x"""; import os; os.system("touch PWNED"); x = """\' # ---'
    out = write_space(SpaceConfig(bundle=str(_hostile_bundle(app_bundle, tmp_path, name)), out=str(tmp_path / "sp")))
    probe = (
        "import runpy, sys; sys.argv = ['app.py']; "
        "g = runpy.run_path('app.py', run_name='space'); print(g['TITLE'])"  # all but the server
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=out, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"shqip-av dubbing: {name}"
    assert not (out / "PWNED").exists() and not (tmp_path / "PWNED").exists()
    meta = metadata_load(out / "README.md")
    assert meta["title"] == f"shqip-av dubbing: {name}" and meta["sdk"] == "gradio"

    multiline = 'x"""\nimport os; os.system("touch PWNED")\n"""'
    with pytest.raises(SpaceError, match="is not plain one-line text"):
        write_space(SpaceConfig(bundle=str(_hostile_bundle(app_bundle, tmp_path / "m", multiline)), out=str(tmp_path / "m" / "sp")))  # fmt: skip
    assert not (tmp_path / "m" / "sp").exists()


def test_a_bundle_with_a_symlink_out_is_refused_and_publish_stages_no_byte_of_its_target(app_bundle, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT-of-the-server\n")
    bundle = tmp_path / "linked-bundle"
    shutil.copytree(app_bundle, bundle)
    (bundle / "passwd.txt").symlink_to(secret)
    out = tmp_path / "sp"
    with pytest.raises(SpaceError, match=r"passwd.txt is a symlink to a file outside"):
        write_space(SpaceConfig(bundle=str(bundle), out=str(out)))
    staged = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p != secret]
    assert not [p for p in staged if "SECRET-CONTENT" in p.read_text(errors="ignore")]
    # a Space folder someone planted the link in afterwards: publish refuses it, stages nothing
    space = write_space(SpaceConfig(bundle=str(app_bundle), out=str(tmp_path / "clean")))
    (space / "bundle" / "passwd.txt").symlink_to(secret)
    with pytest.raises(CardError, match="symlink to a file outside"):
        publish(PublishConfig(space=str(space), repo="user/dubbing", dry_run=True))
    upload = tmp_path / "clean" / ".upload"
    assert not upload.exists() or not [p for p in upload.rglob("*") if "SECRET" in p.read_text(errors="ignore")]


def test_a_space_out_inside_the_bundle_or_holding_other_files_is_refused(app_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(app_bundle, bundle)
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    with pytest.raises(SpaceError, match="is inside .*which it copies"):
        write_space(SpaceConfig(bundle=str(bundle), out=str(bundle / "space")))
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before
    busy = tmp_path / "busy"
    (busy / "other-space").mkdir(parents=True)
    (busy / "other-space" / "app.py").write_text("someone else's\n")
    with pytest.raises(SpaceError, match="other-space/app.py, which export space did not write"):
        write_space(SpaceConfig(bundle=str(bundle), out=str(busy)))
    assert sorted(p.name for p in busy.iterdir()) == ["other-space"]
    # our own Space folder is rewritten in place
    again = write_space(SpaceConfig(bundle=str(bundle), out=str(tmp_path / "mine")))
    assert write_space(SpaceConfig(bundle=str(bundle), out=str(again))) == again
