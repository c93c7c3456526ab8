from dataclasses import dataclass, field

import pytest
import yaml

from shqip_av.config import ConfigError, dump_yaml, from_dict, option, parse_config


@dataclass
class Inner:
    rank: int = option(8, "LoRA rank")


@dataclass
class Cfg:
    root: str = option("data", "dataset root")
    workers: int = option(1, "processes")
    rate: float = option(0.5, "a rate")
    langs: list[str] = option(help="languages", factory=lambda: ["sq"])
    verbose_io: bool = option(False, "a switch")
    inner: Inner = field(default_factory=Inner)


def config_file(tmp_path, text):
    conf = tmp_path / "c.yaml"
    conf.write_text(text)
    return conf


def test_precedence_defaults_yaml_cli(tmp_path):
    conf = config_file(tmp_path, "workers: 3\nrate: 0.25\ninner: {rank: 16}\n")
    cfg, _ = parse_config(
        Cfg, ["--config", str(conf), "--workers", "5", "inner.rank=32", "--langs", "sq,en"], "prog", "d"
    )
    assert (cfg.root, cfg.workers, cfg.rate, cfg.inner.rank, cfg.langs) == ("data", 5, 0.25, 32, ["sq", "en"])


def test_unknown_key_names_closest(tmp_path):
    conf = config_file(tmp_path, "wrokers: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'wrokers' \(did you mean 'workers'\?\)"):
        parse_config(Cfg, ["--config", str(conf)], "prog", "d")


def test_wrong_type_is_one_clear_error():
    with pytest.raises(ConfigError, match="'workers' must be an integer"):
        from_dict(Cfg, {"workers": "many"})
    with pytest.raises(ConfigError, match="'inner.rank' must be an integer"):
        from_dict(Cfg, {"inner": {"rank": [1]}})


def test_invalid_yaml_names_line(tmp_path):
    conf = config_file(tmp_path, "workers: 3\nrate: [1, 2\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        parse_config(Cfg, ["--config", str(conf)], "prog", "d")


def test_saved_config_documents_and_round_trips():
    cfg = from_dict(Cfg, {"workers": 4, "inner": {"rank": 2}})
    text = dump_yaml(cfg)
    assert "# processes" in text and "# LoRA rank" in text
    assert from_dict(Cfg, yaml.safe_load(text)) == cfg


def test_ray_address_is_also_spelled_address_on_both_stages():
    from collect.pipeline import CollectConfig
    from filter.config import FilterConfig

    for cls in (CollectConfig, FilterConfig):
        cfg, _ = parse_config(
            cls, ["--engine", "ray", "--address", "head:6379", "--workers", "3"], prog="p", description="d"
        )
        assert (cfg.engine, cfg.ray_address, cfg.workers) == ("ray", "head:6379", 3)
    with pytest.raises(ConfigError, match="engine"):
        parse_config(CollectConfig, ["--engine", "spark"], prog="p", description="d")
