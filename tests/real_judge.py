"""The realpool_judge fixture (registered in tests/conftest.py): a small slice of the realpool
(real footage of ../shared/testdata, speakers.tsv's split) collected, filtered and sharded as
``make realpool`` does, and a tiny landmark sync judge trained on its train speakers once per
session. The validation speaker's clip is held back from training: tests judge it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED

TABLE = SHARED / "testdata" / "speakers.tsv"
# small, short train clips (160-360 px faces: cheap to track) whose sync the table knows (an
# unclear clip would teach the judge a wrong offset) ...
TRAIN_CLIPS = (
    "Audio_Source_681100216",
    "Input_00098",
    "Audio_Source_741400104",
    "Pose_Source_731200067",
    "brbk7n",
    "id2_vcd_swwp2s",
    "lbax4n",
    "lbbc2a",
    "sbwe5n",
    "swiz3n",
    "deep_avsr__00001",
    "nick_test_video",
    "deep_avsr__00022",
    # ... and 6 more, three of them published late or early: collect takes the table's offset out
    "pwij3p",
    "bbaf2n",
    "Audio_Source_00373",
    "speaking_5",
    "speaking_7",
    "deep_avsr__00008",
)
# ... and one validation speaker (rp44), never trained or calibrated on
VALIDATION_CLIP = "deep_avsr__00004"
# a train speaker whose audio is laid under the validation speaker's face (another voice)
FOREIGN_AUDIO = "deep_avsr__00001"


def table_rows(names) -> list[list[str]]:
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    chosen = [r for r in rows if any(Path(r[0]).stem.endswith(n) for n in names)]
    assert len(chosen) == len(names), f"speakers.tsv lacks some of {names}"
    return [header] + [[str(TABLE.parent / r[0]), *r[1:]] for r in chosen]


def validation_clip() -> tuple[Path, str]:
    row = table_rows([VALIDATION_CLIP])[1]
    return Path(row[0]), row[1]


@pytest.fixture(scope="session")
def realpool_judge(tmp_path_factory):
    """(run folder, metrics, dataset root, the slice's table)."""
    if not TABLE.is_file():
        pytest.skip(f"{TABLE} is missing")
    from collect.pipeline import CollectConfig, prepare_raw
    from collect.table import prepare_sources
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from filter.shard import ShardConfig, pack_shards
    from shqip_av.config import from_dict
    from train.lipsync.judge import JudgeConfig, run_training

    import yaml

    base = tmp_path_factory.mktemp("realpool-judge")
    root = base / "data"
    root.mkdir()
    table = base / "slice.tsv"
    table.write_text("\n".join("\t".join(r) for r in table_rows([*TRAIN_CLIPS, VALIDATION_CLIP])) + "\n")
    (root / "sources.yaml").write_text(yaml.safe_dump(prepare_sources(table, "third-party test footage")))
    prepare_raw(CollectConfig(root=str(root)))
    cfg = FilterConfig(root=str(root), workers=2)  # the realpool's settings (Makefile)
    cfg.sync.min_confidence, cfg.sync.max_abs_offset, cfg.quality.min_eye_distance = 0.0, 15, 28
    prepare_clips(cfg)
    pack_shards(ShardConfig(root=str(root), splits=str(table)))
    run = base / "run"
    judge_cfg = from_dict(
        JudgeConfig,
        {
            "name": "judge-test",
            "output": str(run),
            "data": {"root": str(root), "calibration_share": 0.25},
            "training": {"max_steps": 300, "batch_size": 32, "eval_steps": 150, "save_steps": 150},
        },
    )
    metrics = run_training(judge_cfg)
    yield run, metrics, root, table
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def realpool_mouth_shape(realpool_judge):
    """The audio→mouth-shape model trained once per session on the same slice's train speakers
    (the validation speaker's clip never seen): (model folder, metrics)."""
    from train.lipsync.mouth_shape import train

    _, _, root, _ = realpool_judge
    out = root.parent / "mouth-shape-run"
    metrics = train(str(root), steps=600, output=str(out))
    return out, metrics
