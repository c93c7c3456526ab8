"""collect.table (a sources.yaml over a table of local clips, as make realpool builds) and the
use restriction it can give every entry: collect records it on each video, and cards publish
refuses the data and anything trained on it."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from tests.conftest import SHARED

SPEAKERS = SHARED / "testdata" / "speakers.tsv"
RESTRICTION = "third-party test footage: never publish it or anything trained on it"


def test_the_table_becomes_sources_and_the_restriction_travels_to_raw_and_blocks_publishing(tmp_path):
    from cards.publish import CardError, PublishConfig, check_restrictions
    from collect.pipeline import CollectConfig, prepare_raw
    from collect.table import prepare_sources
    from shqip_av.manifest import read_jsonl
    from shqip_av.takedown import record_trained_on, restrictions_of

    if not SPEAKERS.is_file():
        pytest.skip("needs ../shared/testdata/speakers.tsv")
    rows = list(csv.DictReader(SPEAKERS.open(), delimiter="\t"))
    sources = prepare_sources(SPEAKERS, RESTRICTION)["sources"]
    assert len(sources) == len(rows)
    for entry, row in zip(sources, rows):
        assert entry["speaker"] == row["speaker"] and entry["restriction"] == RESTRICTION
        assert entry["consent"]["kind"] == "licence" and entry["license"] == row["licence"]
    root = tmp_path / "root"
    root.mkdir()
    short = [e for e, r in zip(sources, rows) if 2 < float(r["seconds"]) < 4][:2]
    (root / "sources.yaml").write_text(yaml.safe_dump({"sources": short}))
    stats = prepare_raw(CollectConfig(root=str(root)))
    records = list(read_jsonl(root / "raw" / "manifest.jsonl"))
    assert len(records) == 2, stats
    assert all(r["rights"]["restriction"] == RESTRICTION for r in records)
    with pytest.raises(CardError, match="restriction"):
        check_restrictions(PublishConfig(root=str(root), repo="me/data", dry_run=True))
    # a model that learned from the footage carries the restriction, and so is refused too
    run = tmp_path / "bundle"
    videos = [r["video_id"] for r in records]
    assert restrictions_of(root, videos) == [RESTRICTION]
    record_trained_on(run, videos, ["train"], restrictions_of(root, videos))
    assert json.loads((run / "trained_on.json").read_text())["restrictions"] == [RESTRICTION]
    with pytest.raises(CardError, match="learned from footage"):
        check_restrictions(PublishConfig(root=str(root), bundle=str(run), repo="me/model", dry_run=True))


def test_a_table_without_a_speaker_column_is_one_line(tmp_path):
    from collect.table import prepare_sources
    from shqip_av import ShqipError

    table = tmp_path / "t.tsv"
    table.write_text("file\tname\nx.mp4\ta\n")
    with pytest.raises(ShqipError, match="no speaker column"):
        prepare_sources(table)
