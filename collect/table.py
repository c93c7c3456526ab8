"""python -m collect.table --table speakers.tsv --out data/realpool/sources.yaml [--restriction TEXT]

A sources.yaml over local clips listed in a tab-separated table (one clip a line, a header naming
the columns): ``file`` (relative to the table's folder, or absolute) and ``speaker`` are
required; ``licence``, ``language`` and ``source`` (where the clip came from) are used when
present, and ``sync``/``av_offset`` (a measured verdict and offset: collect corrects the offset
and records both, filter leaves unclear and silent clips out of sync truth). Each clip becomes a ``path`` entry whose consent record is the licence it was published
under (subject: the publisher named in ``source``), and every entry carries ``--restriction``
when given, so that collect records it on every video and ``cards publish`` refuses the data and
anything trained on it. ``make realpool`` builds the real-footage pool this way.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import yaml

from shqip_av import ShqipError
from shqip_av.config import option, parse_config, run_cli
from shqip_av.files import atomic_write_text, read_text_file

LANGUAGES = {"english": "en", "albanian": "sq", "unknown": "und"}  # table names → ISO 639 codes


@dataclass
class TableConfig:
    table: str = option("", "tab-separated table of clips: file, speaker [, licence, language, source]")
    out: str = option("", "the sources.yaml to write (its folder is created)")
    restriction: str = option("", "a use restriction every entry carries, e.g. 'never publish'")


def read_table(path: Path) -> list[dict[str, str]]:
    """The table's rows as column → value; a missing ``file``/``speaker`` column is one line."""
    try:
        text = read_text_file(path, "clip table")
    except OSError as e:
        raise ShqipError(f"--table {path}: {e.strerror or e}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("\t")] if lines else []
    missing = [c for c in ("file", "speaker") if c not in header]
    if missing:
        raise ShqipError(f"--table {path}: no {' or '.join(missing)} column in the first line")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split("\t")]
        row = dict(zip(header, cells))
        if not row.get("file") or not row.get("speaker"):
            raise ShqipError(f"--table {path}: line {number} has no file or no speaker")
        rows.append(row)
    return rows


def prepare_sources(table: str | Path, restriction: str = "") -> dict:
    """The sources.yaml content (a dict) for the clips of ``table``."""
    table = Path(table).resolve()
    entries = []
    for number, row in enumerate(read_table(table), start=2):
        clip = Path(row["file"])
        clip = clip if clip.is_absolute() else table.parent / clip
        if not clip.is_file():
            raise ShqipError(f"--table {table}: {row['file']} does not exist")
        source = row.get("source (repository@commit:path)") or row.get("source") or row["file"]
        language = row.get("language", "").lower()
        entry = {
            "path": str(clip),
            "speaker": row["speaker"],
            "title": clip.stem,
            "language": LANGUAGES.get(language, language[:2] or "und"),
            "captions": False,
            "consent": {
                "kind": "licence",
                "subject": source.split("@")[0],
                "reference": source,
                "granted": datetime.date.today().isoformat(),
            },
        }
        entry.update(_sync_columns(row, table, number, clip))
        if row.get("licence") or row.get("license"):
            entry["license"] = row.get("licence") or row.get("license")
        if restriction:
            entry["restriction"] = restriction
        entries.append(entry)
    return {"sources": entries}


def _sync_columns(row: dict[str, str], table: Path, number: int, clip: Path) -> dict:
    """The ``sync`` and ``av_offset`` columns as the entry's keys: a verdict (in-sync, late, early,
    unclear, silent) and, for a clear one, the offset in frames at the clip's rate (positive: audio
    late), which collect takes out of the audio. A malformed value is one line naming the row."""
    from collect.sources import SYNC_VERDICTS

    verdict = (row.get("sync") or "").strip().lower()
    offset_text = (row.get("av_offset") or "").strip()
    where = f"--table {table}: line {number} ({row['file']})"
    if verdict and verdict not in SYNC_VERDICTS:
        raise ShqipError(f"{where}: sync {verdict!r} is not one of {', '.join(SYNC_VERDICTS)}")
    out: dict = {"sync": verdict} if verdict else {}
    if not offset_text:
        return out
    try:
        offset = int(offset_text)
    except ValueError:
        raise ShqipError(f"{where}: av_offset {offset_text!r} is not a whole number of frames") from None
    if verdict in ("unclear", "silent"):
        raise ShqipError(f"{where}: av_offset {offset} with sync {verdict!r}: an offset needs a clear verdict")
    fps = _number(row.get("fps")) or 25.0
    seconds = _number(row.get("seconds"))
    if seconds is None:
        from shqip_av.media import MediaError, probe

        try:
            seconds = probe(clip).duration
        except MediaError:
            seconds = None
    if seconds is not None and abs(offset) / fps >= seconds:
        raise ShqipError(
            f"{where}: av_offset {offset} frames ({abs(offset) / fps:.2f} s) is not shorter than the clip ({seconds} s)"
        )
    out["av_offset"] = offset
    return out


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def main(argv=None) -> int:
    cfg, _ = parse_config(
        TableConfig, argv, prog="python -m collect.table", description="Write a sources.yaml over a table of clips."
    )
    if not cfg.table or not cfg.out:
        raise ShqipError("give --table <clips.tsv> and --out <sources.yaml>")
    sources = prepare_sources(cfg.table, cfg.restriction)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# written by python -m collect.table from {Path(cfg.table).name}; {len(sources['sources'])} clips\n"
    atomic_write_text(out, header + yaml.safe_dump(sources, sort_keys=False, allow_unicode=True))
    print(f"{out}: {len(sources['sources'])} clips")
    return 0


if __name__ == "__main__":
    run_cli(main)
