"""Captions: WebVTT (the transcripts uploaders provide, and the sample clips carry) and SubRip
(the translations users give to dubbing, and the .srt a dub writes).

Only what transcripts need: cue start, end and text. Styling and positioning are dropped;
inline tags (<c>, <i>, karaoke timestamps) are removed; text is Unicode NFC.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from shqip_av import ShqipError
from shqip_av.files import atomic_write_text

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{3})")
_TAG = re.compile(r"<[^>]*>")
# script and style elements: their content is code, not speech
_CODE = re.compile(r"<(script|style)\b[^>]*>.*?(</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
# terminal escape sequences (colours, cursor moves): ESC [ ... final byte, or ESC and one character
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")
# control and invisible formatting characters: never part of what is said (a NUL would even stop a
# speech synthesizer's command line)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def clean_text(text: str) -> str:
    """Cue text as it is meant to be read: script and style content dropped, tags replaced by a
    space, HTML entities decoded (and tags they spelled removed too), terminal escape sequences and
    control characters dropped, NFC, single spaces."""
    import html

    def untag(value: str) -> str:
        return _TAG.sub(" ", _CODE.sub(" ", value))

    text = untag(html.unescape(untag(_ANSI.sub("", text))))
    text = _CONTROL.sub(" ", _ANSI.sub("", text))
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def _seconds(text: str) -> float:
    m = _TIME.fullmatch(text.strip().split(" ")[0])
    if not m:
        raise ValueError(text)
    h, mnt, s, ms = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + int(s) + int(ms) / 1000


def _stamp(t: float) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def read_vtt(path: str | Path) -> list[Cue]:
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if not text.lstrip().startswith("WEBVTT"):
        raise ShqipError(f"{path}: not a WebVTT file (no WEBVTT header)")
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        idx = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if idx is None:
            continue
        start_s, _, end_s = lines[idx].partition("-->")
        try:
            start, end = _seconds(start_s), _seconds(end_s)
        except ValueError:
            raise ShqipError(f"{path}: bad cue timing {lines[idx]!r}") from None
        body = clean_text(" ".join(lines[idx + 1 :]))
        if body and end > start:
            cues.append(Cue(start, end, body))
    return cues


def write_vtt(path: str | Path, cues: list[Cue]) -> Path:
    parts = ["WEBVTT", ""]
    for cue in cues:
        parts += [f"{_stamp(cue.start)} --> {_stamp(cue.end)}", unicodedata.normalize("NFC", cue.text), ""]
    return atomic_write_text(path, "\n".join(parts))


def _srt_stamp(t: float) -> str:
    return _stamp(t).replace(".", ",")


def read_srt(path: str | Path) -> list[Cue]:
    """SubRip cues (number, ``start --> end``, text lines); a cue ending before it starts is an error."""
    from shqip_av.files import read_text_file

    path = Path(path)
    if path.is_dir():
        raise ShqipError(f"{path} is a folder, not a .srt file")
    text = read_text_file(path, "subtitle file", max_bytes=4 * 1024 * 1024)
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = [ln for ln in block.strip().split("\n") if ln.strip()]
        idx = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if idx is None:
            if lines:
                raise ShqipError(f"{path}: a block without a 'start --> end' line: {lines[0][:60]!r}")
            continue
        start_s, _, end_s = lines[idx].partition("-->")
        try:
            start, end = _seconds(start_s), _seconds(end_s)
        except ValueError:
            raise ShqipError(f"{path}: bad cue timing {lines[idx]!r}") from None
        if end <= start:
            raise ShqipError(f"{path}: cue {lines[idx]!r} ends before it starts")
        cues.append(Cue(start, end, clean_text(" ".join(lines[idx + 1 :]))))
    return cues


def write_srt(path: str | Path, cues: list[Cue]) -> Path:
    parts = []
    for i, cue in enumerate(cues, 1):
        parts += [
            str(i),
            f"{_srt_stamp(cue.start)} --> {_srt_stamp(cue.end)}",
            unicodedata.normalize("NFC", cue.text),
            "",
        ]
    return atomic_write_text(path, "\n".join(parts))
