"""`make lint` (ruff check, ruff format --check, compileall): passes on the tree, fails on a file
that does not compile on the project's minimum Python (3.12 syntax in a 3.11 project)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _lint(*paths) -> subprocess.CompletedProcess:
    where = [f"LINT_PATHS={' '.join(map(str, paths))}"] if paths else []  # default: the whole tree
    return subprocess.run(
        ["make", "-s", "lint", f"PY={sys.executable}", *where], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_make_lint_passes_on_the_tree_and_fails_on_a_file_that_does_not_compile(tmp_path):
    tree = _lint()
    assert tree.returncode == 0, tree.stdout[-2000:] + tree.stderr[-2000:]
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "ok.py").write_text('x = f"{1}"\n')
    (bad / "new_syntax.py").write_text('x = f"{"a"}"\n')  # valid only from Python 3.12
    assert _lint(good).returncode == 0
    proc = _lint(bad)
    assert proc.returncode != 0 and "new_syntax.py" in proc.stdout + proc.stderr
    # and compileall alone, the check that every file compiles, says no too
    assert subprocess.run([sys.executable, "-m", "compileall", "-q", str(bad)], capture_output=True).returncode != 0
