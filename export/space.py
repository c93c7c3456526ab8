"""``python -m export space --bundle B --out space/``: the dubbing app as a Hugging Face Space folder.

The folder runs on its own, with nothing installed from this repository:

- ``app.py`` puts the folder first on the import path and serves ``export.app`` on the bundle;
- the project's own code the app needs (``shqip_av/``, ``export/``, ``train/lipsync/``) beside it;
- the bundle in ``bundle/`` (``--bundle`` a folder), or referenced by Hub id (``--bundle user/name``:
  loaded from the Hub when the Space starts);
- ``requirements.txt`` (the project's pinned dependencies and Gradio), ``packages.txt`` (ffmpeg and
  espeak-ng, which Spaces install with apt) and ``README.md`` with the Space metadata.

Publish it with ``python -m cards publish --space space/ --repo user/name``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from shqip_av import ShqipError
from shqip_av.config import option
from shqip_av.files import UnsafePathError, atomic_write_text, copy_folder, foreign_files, record_owned

REPO = Path(__file__).resolve().parent.parent
CODE = ("shqip_av", "export", "train/__init__.py", "train/lipsync")  # what the app imports, from this checkout
# the data-building stages' dependencies a Space does not need
NOT_NEEDED = ("yt-dlp", "ray", "pyannote.audio", "webdataset", "datasets", "evaluate", "jiwer")
OWNER_KIND = "shqip-av space"
SPACE_BUNDLE = "bundle"


class SpaceError(ShqipError):
    pass


@dataclass
class SpaceConfig:
    bundle: str = option("", "the dubbing bundle: a folder (copied into the Space) or a Hub id user/name (referenced)")
    out: str = option("space", "the Space folder to write")
    title: str = option("", "the Space's title (default: shqip-av dubbing: <bundle name>)")
    max_seconds: float = option(180.0, "longest video the Space dubs, in seconds", above=0)
    revision: str = option("main", "with a Hub id: the bundle's revision")


def _requirements() -> list[str]:
    import tomllib

    import gradio

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    keep = [d for d in project["dependencies"] if not d.startswith(NOT_NEEDED)]
    return keep + [f"gradio=={gradio.__version__}"]


APP = '''"""shqip-av dubbing, as a Hugging Face Space (TITLE below).

Serves the app of ``python -m export app`` on the bundle named by BUNDLE below. Run it locally
with ``python app.py`` from this folder (http://127.0.0.1:7860).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the shqip-av code shipped beside this file, before anything installed

TITLE = {title!r}
BUNDLE = os.environ.get("SHQIP_AV_BUNDLE") or {bundle}
REVISION = os.environ.get("SHQIP_AV_BUNDLE_REVISION", {revision!r})

if __name__ == "__main__":
    from export.app import launch

    launch(
        BUNDLE,
        revision=REVISION,
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        work=os.environ.get("SHQIP_AV_APP_WORK", ""),
        max_seconds=float(os.environ.get("SHQIP_AV_MAX_SECONDS", {max_seconds!r})),
    )
'''

README = """---
title: {title_yaml}
emoji: 🗣️
colorFrom: red
colorTo: gray
sdk: gradio
sdk_version: {gradio}
app_file: app.py
pinned: false
license: {license}
---

# {title}

Dub a talking-head video into {languages}: the speech is recognized, translated (or taken from your
own .srt), spoken again, fitted to the original timing, and the mouth is lip-synced to the new
speech. Every dub is disclosed as synthetic: in its metadata always, and with a visible mark unless
you turn it off. Dub only people who agreed to it: the app asks you to confirm that before it runs.

Made with `python -m export space` of the shqip-av toolkit. The bundle (its models and their
licences) is {where_md}; its card says what each component is and may be used for.

## Files

- `app.py`: starts the app (`python app.py`); `SHQIP_AV_BUNDLE` overrides the bundle.
- `bundle/` or a Hub id in `app.py`: the dubbing bundle.
- `shqip_av/`, `export/`, `train/`: the shqip-av code the app runs.
- `requirements.txt`, `packages.txt`: Python packages, and ffmpeg and espeak-ng.

Videos longer than {minutes:g} min are refused (`SHQIP_AV_MAX_SECONDS`).
"""


def _copy_code(out: Path) -> list[str]:
    written = []
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in CODE:
        src, dst = REPO / part, out / part
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        written.append(part.split("/")[0])
    return sorted(set(written))


_NOT_PLAIN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def plain_text(value: str, what: str, limit: int = 120) -> str:
    """A bundle's or a user's text that lands in app.py or the README's YAML: one line of printable
    characters, or refused (it is then also written only as a literal: repr in Python, a quoted
    scalar in YAML)."""
    value = str(value)
    if _NOT_PLAIN.search(value) or len(value) > limit or not value.strip():
        raise SpaceError(
            f"{what} {value[:40]!r}{'…' if len(value) > 40 else ''} is not plain one-line text of at most "
            f"{limit} characters; give --title, or fix the bundle's model_index.json"
        )
    return value


def _yaml_scalar(value: str) -> str:
    """A double-quoted YAML scalar (JSON's string syntax is YAML's)."""
    return json.dumps(value, ensure_ascii=False)


def _check_places(out: Path, bundle_path: Path | None) -> None:
    """--out may be neither inside what is copied into it (the bundle, this checkout's code) nor
    hold the bundle being copied (replacing out/bundle would delete it)."""
    target = out.resolve()
    sources = [REPO / p for p in CODE] + ([bundle_path] if bundle_path else [])
    for src in sources:
        base = src.resolve()
        if target == base or base in target.parents:
            raise SpaceError(f"--out {out} is inside {src}, which it copies: choose a folder outside it")
    if bundle_path is not None:
        base = bundle_path.resolve()
        if target in base.parents:
            raise SpaceError(f"--out {out} holds the bundle {bundle_path}: choose a folder outside it")


def write_space(cfg: SpaceConfig) -> Path:
    """Write the Space folder; returns it. A folder that holds any file not written by this command
    is refused (nothing changed): publishing the Space uploads everything in it."""
    from export.bundle import load_bundle
    from shqip_av.components import is_hub_id

    if not cfg.bundle:
        raise SpaceError("give --bundle: a bundle folder (python -m export bundle) or a Hub id")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise SpaceError(f"--out {out} is a file, not a folder")
    foreign = foreign_files(out, OWNER_KIND)
    if foreign:
        raise SpaceError(
            f"--out {out} already has {foreign[0]}, which export space did not write; a Space folder is "
            "published whole, so choose a new or empty folder (nothing changed)"
        )
    hub = is_hub_id(cfg.bundle) and not Path(cfg.bundle).exists()
    if not hub:
        _check_places(out, Path(cfg.bundle))
    bundle = load_bundle(cfg.bundle, cfg.revision)  # a broken bundle is refused before anything is written
    index = bundle.index
    title = plain_text(cfg.title or f"shqip-av dubbing: {index.get('name') or Path(cfg.bundle).name}", "the title")
    tts = index.get("tts", {})
    languages = plain_text(
        str(tts.get("source") if tts.get("backend") == "espeak" else index.get("target_language") or "en"),
        "the bundle's language",
    )
    license = plain_text(str(index.get("most_restrictive_license") or "other"), "the bundle's licence")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", license):  # a Hub licence id, nothing else in the YAML
        license = "other"
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / SPACE_BUNDLE, *(out / p.split("/")[0] for p in CODE)):
        if stale.is_dir():
            shutil.rmtree(stale)  # our own copies, from a previous run: replaced whole
    code = _copy_code(out)
    if hub:
        where_md, bundle_expr = f"[{cfg.bundle}](https://huggingface.co/{cfg.bundle})", repr(cfg.bundle)
    else:
        try:
            copy_folder(bundle.path, out / SPACE_BUNDLE, skip=(".*",))
        except UnsafePathError as e:
            shutil.rmtree(out / SPACE_BUNDLE, ignore_errors=True)
            raise SpaceError(f"the bundle cannot go into a Space: {e}") from None
        where_md, bundle_expr = "in `bundle/`", 'str(HERE / "bundle")'
    import gradio

    atomic_write_text(
        out / "app.py",
        APP.format(title=title, bundle=bundle_expr, revision=cfg.revision, max_seconds=float(cfg.max_seconds)),
    )
    atomic_write_text(
        out / "README.md",
        README.format(
            title_yaml=_yaml_scalar(title),
            title=title,
            gradio=gradio.__version__,
            license=license if license != "unknown" else "other",
            languages=languages,
            where_md=where_md,
            minutes=cfg.max_seconds / 60,
        ),
    )
    atomic_write_text(out / "requirements.txt", "\n".join(_requirements()) + "\n")
    atomic_write_text(out / "packages.txt", "ffmpeg\nespeak-ng\n")
    record_owned(out, OWNER_KIND, ["app.py", "README.md", "requirements.txt", "packages.txt", *code] +
                 ([] if hub else [SPACE_BUNDLE]))  # fmt: skip
    return out
