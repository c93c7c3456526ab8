"""sources.yaml: what to collect, and the consent basis of each source.

    defaults:                      # optional; applies to every entry below
      language: sq
    sources:
      - url: https://www.youtube.com/watch?v=XXXXXXXXXXX   # a video: its CC licence is the basis
      - url: https://www.youtube.com/@SomeChannel          # a channel or playlist
        max_videos: 50
        consent:                                           # explicit consent record
          kind: channel-permission                         # licence | release | channel-permission
          subject: SomeChannel
          reference: "e-mail of 2025-02-01, archived as consent/somechannel.eml"
          granted: 2025-02-01
      - path: recordings/arta                              # own footage: a file or a folder
        license: CC BY 4.0
        consent: {kind: release, subject: Arta K., reference: release form 12, granted: 2025-03-01}
      - path: /data/test-clips                             # footage for testing only
        restriction: "third-party test footage: never publish it or anything trained on it"

Relative ``path`` entries are relative to the folder of sources.yaml. Every error names the
file and line, because a typo in a 500-line source list must be findable.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shqip_av import ShqipError
from shqip_av.config import compose_yaml
from shqip_av.files import read_text_file
from shqip_av.records import Consent

ENTRY_KEYS = {
    "url", "path", "consent", "license", "language", "max_videos", "title", "speaker", "captions", "dialect",
    "restriction", "sync", "av_offset",
}  # fmt: skip
# what a table of clips knows of a recording's sync (collect.table): av_offset only with late/early/in-sync
SYNC_VERDICTS = ("in-sync", "late", "early", "unclear", "silent")
DIALECTS = ("gheg", "tosk", "mixed")  # the two main Albanian dialects, for the dataset card's coverage
DEFAULT_KEYS = ENTRY_KEYS - {"url", "path", "title", "sync", "av_offset"}
SCALAR_KEYS = ENTRY_KEYS - {"consent"}


class SourcesError(ShqipError):
    pass


@dataclass
class SourceEntry:
    """One line item of sources.yaml, with defaults applied."""

    url: str | None = None
    path: Path | None = None
    consent: Consent | None = None
    license: str | None = None  # licence the collector declares for the material (recorded, not a basis)
    language: str = "sq"
    max_videos: int = 0  # for playlists and channels; 0 = all
    title: str | None = None
    speaker: str | None = None
    dialect: str | None = None  # gheg | tosk | mixed
    captions: bool = True
    # a use restriction carried by every record of this source, e.g. "third-party test footage: never
    # publish it or anything trained on it"; cards publish refuses such data and what learned from it
    restriction: str | None = None
    sync: str | None = None  # a verdict measured before collect (SYNC_VERDICTS)
    av_offset: int | None = None  # frames the audio is late (+) or early (-); corrected at collect
    line: int = 0  # where it is in sources.yaml, for messages

    @property
    def target(self) -> str:
        return self.url or str(self.path)


@dataclass
class Sources:
    path: Path
    entries: list[SourceEntry] = field(default_factory=list)


def _err(path: Path, node: yaml.Node | None, message: str) -> SourcesError:
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    return SourcesError(f"{path}{line}: {message}")


def _mapping(node: yaml.Node, path: Path, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _err(path, node, f"{what} must be a mapping (key: value lines)")
    out = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in out:
            raise _err(path, key_node, f"duplicate key '{key}' in {what}")
        out[key] = (key_node, value_node)
    return out


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _entry(
    raw: dict[str, tuple[yaml.Node, yaml.Node]], defaults: dict[str, Any], path: Path, node: yaml.Node
) -> SourceEntry:
    for key, (key_node, _) in raw.items():
        if key not in ENTRY_KEYS:
            raise _err(
                path, key_node, f"unknown key '{key}' in a source entry (known: {', '.join(sorted(ENTRY_KEYS))})"
            )
        value_node = raw[key][1]
        if key in SCALAR_KEYS and not isinstance(value_node, yaml.ScalarNode):
            kind = "a list" if isinstance(value_node, yaml.SequenceNode) else "a mapping"
            raise _err(path, value_node, f"'{key}' must be a single value, not {kind}")
    values = dict(defaults)
    values.update({k: _construct(v) for k, (_, v) in raw.items()})
    if ("url" in values) == ("path" in values):
        raise _err(path, node, "a source entry needs exactly one of 'url' or 'path'")
    entry = SourceEntry(line=node.start_mark.line + 1)
    if "url" in values:
        url = str(values["url"]).strip()
        if not url.startswith(("http://", "https://")):
            raise _err(path, raw["url"][1], f"'url' must be an http(s) URL, got {url!r} (use 'path' for local files)")
        entry.url = url
    else:
        p = Path(str(values["path"])).expanduser()
        entry.path = p if p.is_absolute() else (path.parent / p)
    if values.get("consent") is not None:
        c = values["consent"]
        cnode = (raw.get("consent") or (None, node))[1]
        if not isinstance(c, dict):
            raise _err(path, cnode, "'consent' must be a mapping with kind, subject, reference, granted")
        unknown = set(c) - {"kind", "subject", "reference", "granted"}
        if unknown:
            raise _err(path, cnode, f"unknown consent key(s) {', '.join(sorted(map(str, unknown)))}")
        for key in ("kind", "subject", "reference"):
            if isinstance(c.get(key), (list, dict)):
                raise _err(path, cnode, f"consent '{key}' must be a single value, not {type(c[key]).__name__}")
        try:
            entry.consent = Consent(
                kind=str(c.get("kind", "")),
                subject=str(c.get("subject") or ""),
                reference=str(c.get("reference") or ""),
                granted=_granted(c.get("granted")),
            )
        except ShqipError as e:
            raise _err(path, cnode, str(e)) from None
    for key, conv in (("license", str), ("language", str), ("title", str), ("speaker", str), ("restriction", str)):
        if values.get(key) is not None:
            setattr(entry, key, conv(values[key]).strip())
    if values.get("dialect") is not None:
        dialect = str(values["dialect"]).strip().lower()
        if dialect not in DIALECTS:
            raise _err(
                path,
                (raw.get("dialect") or (None, node))[1],
                f"'dialect' must be one of {', '.join(DIALECTS)}, got {values['dialect']!r}",
            )
        entry.dialect = dialect
    if values.get("max_videos") is not None:
        mv = values["max_videos"]
        if not isinstance(mv, int) or isinstance(mv, bool) or mv < 0:
            raise _err(
                path, (raw.get("max_videos") or (None, node))[1], f"'max_videos' must be a whole number ≥ 0, got {mv!r}"
            )
        entry.max_videos = mv
    if values.get("sync") is not None:
        verdict = str(values["sync"]).strip().lower()
        if verdict not in SYNC_VERDICTS:
            raise _err(
                path, (raw.get("sync") or (None, node))[1],
                f"'sync' must be one of {', '.join(SYNC_VERDICTS)}, got {values['sync']!r}",
            )  # fmt: skip
        entry.sync = verdict
    if values.get("av_offset") is not None:
        offset = values["av_offset"]
        where = (raw.get("av_offset") or (None, node))[1]
        if not isinstance(offset, int) or isinstance(offset, bool) or abs(offset) > 250:
            raise _err(path, where, f"'av_offset' must be a whole number of frames within ±250, got {offset!r}")
        if entry.sync in ("unclear", "silent"):
            raise _err(
                path, where, f"'av_offset' with sync '{entry.sync}': an offset is known only for a clear verdict"
            )
        entry.av_offset = offset
    if values.get("captions") is not None:
        if not isinstance(values["captions"], bool):
            raise _err(path, (raw.get("captions") or (None, node))[1], "'captions' must be true or false")
        entry.captions = values["captions"]
    return entry


def _granted(value: Any) -> str | None:
    """The consent date as an ISO date; a date in the future, or not a date, is an error."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        value = value.date()
    if not isinstance(value, datetime.date):
        try:
            value = datetime.date.fromisoformat(str(value).strip())
        except ValueError:
            raise ShqipError(f"consent 'granted' must be a date such as 2025-02-01, got {value!r}") from None
    if value > datetime.date.today():
        raise ShqipError(f"consent 'granted' {value.isoformat()} is in the future")
    return value.isoformat()


def load_sources(path: str | Path) -> Sources:
    """Parse and validate sources.yaml; any problem is a SourcesError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise SourcesError(
            f"{path}: sources file not found (write one, or run `python -m collect.sample` for the demo set)"
        )
    try:
        text = read_text_file(path, "sources file")
    except ShqipError as e:
        raise SourcesError(str(e)) from None
    root = compose_yaml(text, path, SourcesError)
    if root is None:
        raise SourcesError(f"{path}: empty; it needs a 'sources:' list")
    top = _mapping(root, path, "sources.yaml")
    for key, (key_node, _) in top.items():
        if key not in ("sources", "defaults"):
            raise _err(path, key_node, f"unknown top-level key '{key}' (expected 'sources' and optionally 'defaults')")
    if "sources" not in top:
        raise _err(path, root, "missing the 'sources:' list")
    defaults: dict[str, Any] = {}
    if "defaults" in top:
        dnode = top["defaults"][1]
        for key, (key_node, value_node) in _mapping(dnode, path, "'defaults'").items():
            if key not in DEFAULT_KEYS:
                raise _err(path, key_node, f"'{key}' cannot be a default (allowed: {', '.join(sorted(DEFAULT_KEYS))})")
            if key in SCALAR_KEYS and not isinstance(value_node, yaml.ScalarNode):
                raise _err(path, value_node, f"'{key}' must be a single value")
            defaults[key] = _construct(value_node)
    snode = top["sources"][1]
    if not isinstance(snode, yaml.SequenceNode):
        raise _err(path, snode, "'sources' must be a list of entries (lines starting with '- ')")
    entries = [_entry(_mapping(item, path, "a source entry"), defaults, path, item) for item in snode.value]
    return Sources(path=path, entries=entries)
