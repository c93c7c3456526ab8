import os

import pytest

from shqip_av.files import DatasetRoot, UnsafePathError, atomic_output, safe_id
from shqip_av.manifest import JsonlAppender, KeyedJsonl, ManifestError, read_jsonl


def test_paths_never_leave_the_root(tmp_path):
    root = DatasetRoot(tmp_path / "data")
    assert root.path("raw", "abc") == (tmp_path / "data" / "raw" / "abc").resolve()
    for bad in (["..", "x"], ["raw/../../x"], ["/etc/passwd"]):
        with pytest.raises(UnsafePathError):
            root.path(*bad)
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path, tmp_path / "data" / "escape")
    with pytest.raises(UnsafePathError):
        root.path("escape", "file")


def test_safe_id_strips_traversal_and_dots():
    assert safe_id("../../etc/passwd") == "etc_passwd"
    assert "." not in safe_id("a.b.c") and "/" not in safe_id("a/b")


def test_atomic_output_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_partial_last_line_is_ignored_then_repaired(tmp_path):
    path = tmp_path / "m.jsonl"
    JsonlAppender(path).append({"video_id": "a"})
    with open(path, "ab") as fh:
        fh.write(b'{"video_id": "b", "tru')  # a writer killed mid-line
    assert [r["video_id"] for r in read_jsonl(path)] == ["a"]
    app = JsonlAppender(path)  # reopening cuts the partial line
    app.append({"video_id": "b"})
    assert [r["video_id"] for r in read_jsonl(path)] == ["a", "b"]
    assert path.read_bytes().count(b"\n") == 2


def test_corrupt_complete_line_names_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ManifestError, match=r"m.jsonl:2"):
        list(read_jsonl(path))


def test_keyed_jsonl_rewrites_only_on_change(tmp_path):
    path = tmp_path / "rej.jsonl"
    store = KeyedJsonl(path, key=lambda r: r["key"])
    assert store.put({"key": "x", "reason": "a"})
    before = path.stat().st_mtime_ns
    assert not store.put({"key": "x", "reason": "a"})
    assert path.stat().st_mtime_ns == before
    assert store.put({"key": "x", "reason": "b"}) and len(KeyedJsonl(path, key=lambda r: r["key"])) == 1
    assert store.discard("x") and list(read_jsonl(path)) == []
