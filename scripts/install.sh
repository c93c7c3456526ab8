#!/usr/bin/env bash
# make install: system programs, .venv, the project with its pinned dependencies, and the one
# post-install fix the CPU-only torch needs. Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# 1. System programs (DESIGN.md §5): ffmpeg/ffprobe for all media I/O, espeak-ng for Albanian speech,
#    chromium and its driver for the tests that open the app and the review page in a real browser.
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "WARNING: ${missing[*]} not found; install them with your package manager" \
         "(macOS: brew install ffmpeg espeak-ng chromium chromedriver) and rerun make install" >&2
  fi
fi

# 2. The environment. constraints.txt pins torch 2.13.0 so no CUDA stack is pulled on CPU machines.
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[test]'

# 3. torchaudio on a CPU-only torch. torchaudio's PyPI wheel (2.11) ships a compiled extension
#    linked against CUDA libraries. With a CPU-only torch it fails to load, and because
#    transformers, peft, evaluate and pyannote.audio import torchaudio, all of them break.
#    When (and only when) torch has no CUDA and the extension does not load, rename it away:
#    torchaudio then runs in its pure-Python mode, which is all this project (and pyannote) uses.
"$VENV/bin/python" - <<'PY'
import importlib.util, pathlib, subprocess, sys
import torch
if torch.version.cuda is None:
    probe = subprocess.run([sys.executable, "-c", "import torchaudio"], capture_output=True, text=True)
    if probe.returncode != 0 and "_torchaudio" in probe.stderr:
        lib = pathlib.Path(importlib.util.find_spec("torchaudio").origin).parent / "lib"
        for so in lib.glob("_torchaudio*.so"):
            so.rename(so.with_name(so.name + ".disabled-cpu-only-torch"))
            print(f"disabled CUDA-linked {so.name} (CPU-only torch; torchaudio runs in pure-Python mode)")
        check = subprocess.run([sys.executable, "-c", "import torchaudio, transformers"], capture_output=True, text=True)
        if check.returncode != 0:
            sys.exit("torchaudio still fails to import:\n" + check.stderr[-2000:])
PY

echo "environment ready in $VENV; check it with: $VENV/bin/python -m shqip_av.doctor"
