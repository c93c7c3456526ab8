"""One configuration mechanism for every stage.

A stage declares a dataclass whose fields carry their own help text (``option(...)``).
Values come, in rising precedence, from the dataclass defaults, a YAML file (``--config``) and
the command line (``--field value``, ``--section.field value`` or bare ``section.field=value``).
The resolved config is saved next to the stage's outputs so a run can be repeated exactly.

Unknown keys and values of the wrong type stop the program with one line that names the key
(and the closest valid key), because a silently ignored typo costs a whole run.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import yaml

from shqip_av import ShqipError

T = TypeVar("T")


class ConfigError(ShqipError):
    pass


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Callable | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    choices: Sequence[str] | None = None,
    flags: Sequence[str] = (),
):
    """A config field with its documentation (shown by ``--help`` and in saved configs) and, for
    numbers, its valid range: ``min``/``max`` inclusive, ``above`` exclusive; for strings, ``choices``.
    Values outside are refused when the config is built, before a stage touches any data.
    ``flags``: other command-line spellings (``--address`` for ``ray_address``)."""
    meta = {
        "help": help,
        "min": min,
        "max": max,
        "above": above,
        "choices": tuple(choices) if choices else None,
        "flags": tuple(flags),
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check and convert a YAML/CLI value to the declared type."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}' must not be empty")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build ``cls`` from a (possibly partial) mapping; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[name] = _coerce(value, hints[name], f"{prefix}{name}")
        check_range(fields[name], kwargs[name], f"{prefix}{name}")
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"config key '{prefix}{missing[0]}' is required")
    return cls(**kwargs)


def range_text(f: dataclasses.Field) -> str:
    """The valid range of a field in words ('' when it has none)."""
    lo, hi, above, choices = (f.metadata.get(k) for k in ("min", "max", "above", "choices"))
    if choices:
        return "one of " + ", ".join(choices)
    parts = (
        ([f"> {above:g}"] if above is not None else [])
        + ([f">= {lo:g}"] if lo is not None else [])
        + ([f"<= {hi:g}"] if hi is not None else [])
    )
    return " and ".join(parts)


def check_range(f: dataclasses.Field, value: Any, key: str) -> None:
    lo, hi, above, choices = (f.metadata.get(k) for k in ("min", "max", "above", "choices"))
    if value is None:
        return
    if choices and value not in choices:
        raise ConfigError(f"config key '{key}' must be {range_text(f)}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (
            value != value
            or (lo is not None and value < lo)
            or (hi is not None and value > hi)
            or (above is not None and value <= above)
        ):
            raise ConfigError(f"config key '{key}' must be {range_text(f)}, got {value!r}")


def validate(cfg: Any, prefix: str = "") -> Any:
    """Check every field of a config object (built from a file or in code) against its range;
    stages call this before touching any data. Returns ``cfg``."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{prefix}{f.name}.")
        else:
            check_range(f, value, f"{prefix}{f.name}")
    return cfg


def flatten(data: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} → {"a.b": 1}: the dotted keys of a nested config dict."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


MAX_YAML_NODES = 200_000  # after expanding aliases; a real config or source list is far below


def compose_yaml(text: str, path: str | Path, error: type[ShqipError] = ConfigError) -> yaml.Node | None:
    """Parse YAML into its node graph, refusing documents whose aliases expand beyond
    ``MAX_YAML_NODES`` (an alias bomb would otherwise take gigabytes when its values are used)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise error(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    sizes: dict[int, int] = {}

    def expanded(node: yaml.Node) -> int:  # memoized: linear in the file, whatever the expansion
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a cycle counts once
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(expanded(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(expanded(k) + expanded(v) for k, v in node.value)
        else:
            total = 1
        sizes[id(node)] = min(total, 10 * MAX_YAML_NODES)
        return sizes[id(node)]

    if root is not None and expanded(root) > MAX_YAML_NODES:
        raise error(
            f"{path}: the YAML expands to more than {MAX_YAML_NODES} values through its aliases "
            f"(&anchors and *references); refusing to load it"
        )
    return root


def load_yaml(path: str | Path) -> dict:
    from shqip_av.files import read_text_file

    path = Path(path)
    try:
        text = read_text_file(path, "config file")
    except ShqipError as e:
        raise ConfigError(str(e)) from None
    node = compose_yaml(text, path)
    try:
        data = yaml.SafeLoader(text).construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return data


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.replace("-", "_").split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        k = str(k).replace("-", "_")
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _leaf_fields(cls: type, prefix: str = ""):
    """(dotted name, type, help, default) of every leaf field, nested sections flattened."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            yield from _leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = None
            help_text = f.metadata.get("help", "")
            if range_text(f):
                help_text = f"{help_text} ({range_text(f)})" if help_text else f"({range_text(f)})"
            yield f"{prefix}{f.name}", tp, help_text, default


def _extra_flags(cls: type) -> dict[str, tuple[str, ...]]:
    """Top-level fields' other command-line spellings."""
    return {f.name: f.metadata.get("flags", ()) for f in dataclasses.fields(cls) if f.metadata.get("flags")}


def _cli_value(text: str, tp: Any) -> Any:
    # Strings stay verbatim (a title like "yes" must not become a bool); the rest parse as YAML
    # so that lists and numbers are written the same way on the command line as in the file.
    if tp is str:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Any option may also be given as key=value; precedence: defaults < --config < command line.",
    )
    parser.add_argument("--config", metavar="YAML", help="YAML file with config values")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    extra = _extra_flags(cls)
    for name, tp, help_text, default in _leaf_fields(cls):
        flags = ["--" + name.replace("_", "-"), *extra.get(name, ())]
        shown = f"{help_text} [default: {default!r}]" if help_text else f"[default: {default!r}]"
        if tp is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=shown)
        else:
            parser.add_argument(*flags, dest=name, default=None, metavar="VALUE", help=shown)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=argparse.SUPPRESS)
    return parser


def parse_config(cls: type[T], argv: Sequence[str] | None, prog: str, description: str) -> tuple[T, argparse.Namespace]:
    """Defaults < YAML file < command-line flags and key=value overrides."""
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(argv)
    data: dict = load_yaml(args.config) if args.config else {}
    leaf_types = {name: tp for name, tp, _, _ in _leaf_fields(cls)}
    cli: dict = {}
    for name, tp in leaf_types.items():
        value = getattr(args, name, None)
        if value is not None:
            _set_dotted(cli, name, value if isinstance(value, bool) else _cli_value(value, tp))
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"unexpected argument {item!r} (overrides are key=value)")
        key, text = item.split("=", 1)
        tp = leaf_types.get(key.replace("-", "_"), Any)
        _set_dotted(cli, key, _cli_value(text, tp))
    return from_dict(cls, _merge(data, cli)), args


def dump_yaml(cfg: Any) -> str:
    """The resolved config as YAML, each key preceded by its help text."""
    lines = [f"# resolved {type(cfg).__name__} (shqip-av); every key is documented"]

    def emit(obj: Any, indent: str) -> None:
        hints = _hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("help"):
                lines.append(f"{indent}# {f.metadata['help']}")
            tp, _ = _unwrap_optional(hints[f.name])
            if dataclasses.is_dataclass(tp) and value is not None:
                lines.append(f"{indent}{f.name}:")
                emit(value, indent + "  ")
            else:
                # JSON is valid YAML and keeps every value on one readable line
                text = f"{f.name}: {json.dumps(value, ensure_ascii=False)}"
                lines.append(f"{indent}{text}")

    emit(cfg, "")
    return "\n".join(lines) + "\n"


def save_config(cfg: Any, path: str | Path) -> Path:
    from shqip_av.files import atomic_write_text

    return atomic_write_text(Path(path), dump_yaml(cfg))


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a command-line entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = main()
    except ShqipError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
