"""python -m export bundle --out exports/<name> --asr ... --mt ... --tts backend:id --generator ... --expert ...

The dubbing bundle (DESIGN.md §8): one folder laid out like a Hub model repo.

- ``model_index.json`` names each component (asr, mt, tts, generator, expert) with its library,
  class, source, revision and licence. Components trained here (a train.asr run, a sync expert, a
  generator, any local model folder) are copied in, under their component's name; third-party
  ones are referenced by Hub id + revision and downloaded when the bundle is used.
- ``README.md``: the card: what each component does, its licence, the most restrictive licence of
  the whole, intended use and limits (every output is synthetic and says so).

``load_bundle(folder or Hub id)`` reads it back; ``Bundle.load_*`` give the components. The bundle
is written to a temporary folder beside ``--out`` and renamed into place when complete, so a
failed run never leaves half a bundle or harms the previous one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from shqip_av import ShqipError
from shqip_av.config import option
from shqip_av.files import DatasetRoot, atomic_write_text
from shqip_av.log import get_logger

log = get_logger(__name__)

COMPONENTS = ("asr", "mt", "tts", "generator", "expert", "mouth_shape")
LIPSYNC = ("retrieval", "generator")  # how a dub makes mouths (DESIGN.md §8.1)
TTS_BACKENDS = ("espeak", "vits")

# Licences of third-party model families this project uses, as their model cards state them
# (nothing can be asked of the Hub offline; --license component=id overrides or fills in).
KNOWN_LICENSES = (
    ("openai/whisper", "apache-2.0"),
    ("Helsinki-NLP/opus-mt", "cc-by-4.0"),
    ("facebook/nllb", "cc-by-nc-4.0"),
    ("facebook/m2m100", "mit"),
    ("google/madlad400", "apache-2.0"),
    ("facebook/mms-tts", "cc-by-nc-4.0"),
)
ESPEAK_LICENSE = "gpl-3.0"  # the program's; speech it synthesizes is not covered by it

# how restrictive a licence is for someone publishing dubbed videos: higher is more restrictive
_RANK = (("unknown", 5), ("nc", 4), ("gpl", 3), ("sa", 3), ("openrail", 2), ("cc-by", 1))


def license_rank(license_id: str) -> int:
    text = license_id.lower()
    for marker, rank in _RANK:
        if marker in text:
            return rank
    return 0  # apache-2.0, mit, cc0-1.0, bsd…


def most_restrictive(licenses: list[str]) -> str:
    return max(licenses, key=license_rank) if licenses else "unknown"


class BundleError(ShqipError):
    pass


@dataclass
class BundleConfig:
    out: str = option("", "bundle folder to write (exports/<name>)")
    root: str = option("data", "dataset root that relative run folders are read from")
    asr: str = option("", "speech recognition: a train.asr run (runs/asr/<name>), a Whisper folder or a Hub id")
    mt: str = option(
        "",
        "translation: a Marian/NLLB/M2M100/MADLAD Hub id or local folder "
        "(empty: the bundle needs the user's own translation .srt)",
    )
    tts: str = option("espeak:sq", "speech synthesis, backend:id: espeak:<voice> or vits:<Hub id or folder>")
    generator: str = option("", "the lip-sync generator: runs/lipsync/<name> (or its generator/ folder, or a Hub id)")
    expert: str = option("", "the sync expert that scores the result: runs/lipsync/<name> (or a Hub id)")
    lipsync: str = option(
        "",
        "how the dub makes mouths: retrieval (the speaker's own mouths, chosen by the audio→mouth-shape "
        "model; for CPUs, needs no generator) or generator (the U-Net; for GPUs). Default: retrieval "
        "when --mouth-shape is given, else generator",
    )
    mouth_shape: str = option("", "the audio→mouth-shape model (retrieval): runs/lipsync/<name> (or a Hub id)")
    source_language: str = option("sq", "language of the videos to dub (empty: detected by Whisper)")
    to: str = option("en", "default target language")
    revision: list[str] = option(
        help="Hub revision per referenced component, component=revision (default main)", factory=list
    )
    license: list[str] = option(
        help="licence per component, component=id (overrides what is known or read)", factory=list
    )
    name: str = option("", "bundle name (default: the folder's name)")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or key not in COMPONENTS or not val:
            raise BundleError(
                f"--{what} {value!r}: write component=value with a component among {', '.join(COMPONENTS)}"
            )
        out[key] = val
    return out


def _is_hub_id(source: str) -> bool:
    from shqip_av.components import is_hub_id

    return is_hub_id(source)


def _trained_from(run: Path, root: str) -> str:
    """Where a component was trained, as a user can read it without the builder's machine: the
    run relative to the dataset root (runs/lipsync/<name>), else the run folder's name."""
    try:
        return DatasetRoot(root).relative(run)
    except ValueError:
        return run.resolve().name


def _collect_trained_on(folder: Path, into: set[str]) -> None:
    """The digests of the videos a run learned from (its trained_on.json), so a takedown can
    mark the bundle as it marks the run."""
    from shqip_av.takedown import TRAINED_ON

    for candidate in (folder / TRAINED_ON, folder.parent / TRAINED_ON):
        if candidate.is_file():
            try:
                record = json.loads(candidate.read_text(encoding="utf-8"))
                into.update(record.get("video_sha256", []))
                into.update(RESTRICTED + r for r in record.get("restrictions") or [])
            except (ValueError, AttributeError):
                pass
            return


def _local(source: str, root: str) -> Path | None:
    """The folder a component names (as given, or under the dataset root), or None for a Hub id."""
    for path in (Path(source).expanduser(), DatasetRoot(root).path(source) if not Path(source).is_absolute() else None):
        if path is not None and path.is_dir():
            return path
    if _is_hub_id(source):
        return None
    raise BundleError(f"{source}: no such folder (and not a Hub id user/name)")


def _card_license(folder: Path) -> str | None:
    """The licence in a model folder's card front matter, if any."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(card).data.to_dict().get("license")
    except Exception:  # noqa: BLE001 - an unreadable card just means the licence is not known from it
        return None


def _known_license(hub_id: str) -> str:
    for prefix, license_id in KNOWN_LICENSES:
        if hub_id.startswith(prefix):
            return license_id
    return "unknown"


def _architecture(folder: Path, default: str) -> str:
    try:
        return json.loads((folder / "config.json").read_text()).get("architectures", [default])[0]
    except (OSError, ValueError, IndexError):
        return default


def _copy(src: Path, dst: Path, skip=("checkpoints",)) -> None:
    from shqip_av.files import UnsafePathError, copy_folder

    try:
        copy_folder(src, dst, skip=skip)
    except UnsafePathError as e:
        raise BundleError(str(e)) from None


def _asr_entry(cfg: BundleConfig, stage: Path, revision: str, licenses: dict) -> dict:
    from shqip_av.components.whisper import _adapter_base  # the base a LoRA adapter was trained on

    folder = _local(cfg.asr, cfg.root)
    if folder is None:
        return {
            "library": "transformers",
            "class": "WhisperForConditionalGeneration",
            "source": cfg.asr,
            "revision": revision,
            "included": False,
            "license": licenses.get("asr") or _known_license(cfg.asr),
        }
    entry = {"library": "transformers", "class": "WhisperForConditionalGeneration", "source": "asr", "included": True}
    run = folder if (folder / "config.yaml").is_file() and (folder / "processor").is_dir() else None
    if run is not None and (run / "adapter").is_dir():
        _copy(run / "adapter", stage / "asr")
        _merge(run / "processor", stage / "asr")
        base = _adapter_base(run / "adapter")
        base_dir = _local(base, cfg.root) if not _is_hub_id(base) else None
        if base_dir is not None:  # a local base travels with the bundle
            _copy(base_dir, stage / "asr-base")
            entry["base"] = {"source": "asr-base", "included": True}
        else:
            entry["base"] = {"source": base, "revision": revision, "included": False}
        entry["adapter"] = "peft-lora"
        entry["license"] = (
            licenses.get("asr")
            or _card_license(run)
            or (_known_license(base) if base_dir is None else _card_license(base_dir) or "unknown")
        )
    elif run is not None and (run / "model").is_dir():
        _copy(run / "model", stage / "asr")
        _merge(run / "processor", stage / "asr")
        entry["license"] = licenses.get("asr") or _card_license(run) or "unknown"
    elif run is not None:
        raise BundleError(f"{folder} has no adapter/ or model/: the train.asr run has not finished")
    else:
        _copy(folder, stage / "asr")
        entry["license"] = licenses.get("asr") or _card_license(folder) or "unknown"
    if "trained_from" not in entry and run is not None:
        entry["trained_from"] = _trained_from(run, cfg.root)
    if run is not None:
        _collect_trained_on(run, stage_trained_on(stage))
    return entry


def _merge(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.is_file() and not (dst / path.name).exists():
            shutil.copy2(path, dst / path.name)


def _model_folder(source: str, root: str, kind: str) -> Path | None:
    """A run's model folder (runs/lipsync/<name>/<kind>/), a model folder itself, or None for a Hub id."""
    from shqip_av.components import GENERATOR, SYNC_EXPERT, KindError, expect_kind

    folder = _local(source, root)
    if folder is None:
        return None
    from shqip_av.components import MOUTH_SHAPE

    sub = {"mouth_shape": "mouth-shape"}.get(kind, kind)
    try:  # a generator given as the expert (or the reverse): one line, before anything is copied
        expect_kind(
            str(folder), {"generator": GENERATOR, "expert": SYNC_EXPERT, "mouth_shape": MOUTH_SHAPE}[kind],
            f"--{kind.replace('_', '-')}",
        )  # fmt: skip
    except KindError as e:
        raise BundleError(str(e)) from None
    if (folder / sub / "config.json").is_file():
        folder = folder / sub
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise BundleError(f"{source}: not a {kind} (no config.json + model.safetensors; has its training finished?)")
    return folder


def _lipsync_entry(kind: str, source: str, cfg: BundleConfig, stage: Path, revision: str, licenses: dict) -> dict:
    cls = {"generator": "LipSyncGenerator", "expert": "SyncExpert", "mouth_shape": "MouthShapeModel"}[kind]
    if not source:
        return None
    folder = _model_folder(source, cfg.root, kind)
    if folder is None:
        return {
            "library": "shqip-av",
            "class": cls,
            "source": source,
            "revision": revision,
            "included": False,
            "license": licenses.get(kind) or "unknown",
        }
    _copy(folder, stage / kind)
    run = folder.parent if folder.name in (kind, kind.replace("_", "-")) else folder
    _collect_trained_on(folder, stage_trained_on(stage))
    return {
        "library": "shqip-av",
        "class": cls,
        "source": kind,
        "included": True,
        "trained_from": _trained_from(run, cfg.root),
        "license": licenses.get(kind) or _card_license(run) or _card_license(folder) or "unknown",
    }


def _mt_entry(cfg: BundleConfig, stage: Path, revision: str, licenses: dict) -> dict | None:
    if not cfg.mt:
        return None
    folder = _local(cfg.mt, cfg.root)
    if folder is None:
        return {
            "library": "transformers",
            "class": "AutoModelForSeq2SeqLM",
            "source": cfg.mt,
            "revision": revision,
            "included": False,
            "family": mt_family(cfg.mt),
            "license": licenses.get("mt") or _known_license(cfg.mt),
        }
    _copy(folder, stage / "mt")
    return {
        "library": "transformers",
        "class": _architecture(folder, "AutoModelForSeq2SeqLM"),
        "source": "mt",
        "included": True,
        "family": mt_family(cfg.mt, folder),
        "license": licenses.get("mt") or _card_license(folder) or "unknown",
    }


def mt_family(source: str, folder: Path | None = None) -> str:
    """marian, nllb, m2m100 or madlad: how target languages are named for this model."""
    model_type = ""
    if folder is not None and (folder / "config.json").is_file():
        model_type = json.loads((folder / "config.json").read_text()).get("model_type", "")
    text = f"{source} {model_type}".lower()
    for family, markers in (
        ("nllb", ("nllb",)),
        ("m2m100", ("m2m100", "m2m_100")),
        ("madlad", ("madlad", "t5")),
        ("marian", ("marian", "opus-mt")),
    ):
        if any(m in text for m in markers):
            return family
    raise BundleError(f"--mt {source}: not a Marian (opus-mt), NLLB, M2M100 or MADLAD model")


def _tts_entry(cfg: BundleConfig, stage: Path, revision: str, licenses: dict) -> dict:
    backend, sep, ident = cfg.tts.partition(":")
    if not sep or backend not in TTS_BACKENDS or not ident:
        raise BundleError(
            f"--tts {cfg.tts!r}: write backend:id with a backend among {', '.join(TTS_BACKENDS)} "
            "(espeak:sq, vits:facebook/mms-tts-eng)"
        )
    if backend == "espeak":
        from export.speak import EspeakSpeaker
        from shqip_av import ShqipError as _Refused

        try:  # a voice espeak-ng does not have would build a bundle that cannot speak
            EspeakSpeaker(ident)
        except _Refused as e:
            raise BundleError(f"--tts {cfg.tts}: {e}") from None
        return {
            "library": "espeak-ng",
            "class": "espeak-ng",
            "backend": "espeak",
            "source": ident,
            "included": False,
            "license": licenses.get("tts") or ESPEAK_LICENSE,
        }
    folder = _local(ident, cfg.root)
    if folder is None:
        return {
            "library": "transformers",
            "class": "VitsModel",
            "backend": "vits",
            "source": ident,
            "revision": revision,
            "included": False,
            "license": licenses.get("tts") or _known_license(ident),
        }
    _copy(folder, stage / "tts")
    return {
        "library": "transformers",
        "class": _architecture(folder, "VitsModel"),
        "backend": "vits",
        "source": "tts",
        "included": True,
        "license": licenses.get("tts") or _card_license(folder) or "unknown",
    }


_TRAINED_ON: dict[str, set[str]] = {}  # per staging folder: digests of the videos its runs learned from
RESTRICTED = "restriction:"  # ... and, so marked, the use restrictions of that footage


def stage_trained_on(stage: Path) -> set[str]:
    return _TRAINED_ON.setdefault(str(stage), set())


OWNER_KIND = "export bundle"


def _check_out(out: Path) -> None:
    """The bundle folder may be replaced only when everything in it was written by export bundle:
    a folder holding anything else (a dataset root, the user's files) is refused, untouched."""
    from shqip_av.files import foreign_files, owned_files

    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise BundleError(f"--out {out} exists and is not a folder; choose a new folder for the bundle")
    if owned_files(out, OWNER_KIND) is None and _legacy_bundle(out):
        return
    if owned_files(out, OWNER_KIND) is None and any(out.iterdir()):
        raise BundleError(
            f"--out {out} already holds files that export bundle did not write "
            f"({sorted(p.name for p in out.iterdir())[0]}, ...); choose a new or empty folder"
        )
    foreign = foreign_files(out, OWNER_KIND)
    if foreign:
        raise BundleError(
            f"--out {out}: {foreign[0]} was not written by export bundle (added since?); move it "
            f"out of the bundle or choose a new folder, nothing was changed"
        )


def _legacy_bundle(out: Path) -> bool:
    """A bundle written before bundles carried an owner record: its model_index.json is ours and
    the folder holds only what that index names."""
    try:
        index = json.loads((out / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(index, dict) or index.get("_class_name") != "ShqipAvDubbingPipeline":
        return False
    names = {"model_index.json", "README.md", "trained_on.json"}
    for entry in index.values():
        if isinstance(entry, dict) and entry.get("included"):
            names.add(str(entry.get("source")))
            if isinstance(entry.get("base"), dict) and entry["base"].get("included"):
                names.add(str(entry["base"].get("source")))
    return {p.name for p in out.iterdir()} <= names


def build_bundle(cfg: BundleConfig) -> Path:
    import shqip_av
    from shqip_av.files import record_owned

    if not cfg.out:
        raise BundleError("give --out exports/<name>: the bundle folder to write")
    lipsync = cfg.lipsync or ("retrieval" if cfg.mouth_shape else "generator")
    if lipsync not in LIPSYNC:
        raise BundleError(f"--lipsync {cfg.lipsync!r}: one of {', '.join(LIPSYNC)}")
    needed = ("asr", "expert", "mouth_shape" if lipsync == "retrieval" else "generator")
    for name in needed:
        if not getattr(cfg, name):
            flag = name.replace("_", "-")
            raise BundleError(f"give --{flag}: a dubbing bundle with lipsync {lipsync} needs {flag.replace('-', ' ')}")
    revisions, licenses = _pairs(cfg.revision, "revision"), _pairs(cfg.license, "license")
    out = Path(cfg.out)
    _check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BundleError(f"cannot create {out.parent}: {e.strerror}") from None
    stage = out.parent / f".{out.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    _TRAINED_ON.pop(str(stage), None)
    try:
        components = {
            "asr": _asr_entry(cfg, stage, revisions.get("asr", "main"), licenses),
            "mt": _mt_entry(cfg, stage, revisions.get("mt", "main"), licenses),
            "tts": _tts_entry(cfg, stage, revisions.get("tts", "main"), licenses),
            "generator": _lipsync_entry(
                "generator", cfg.generator, cfg, stage, revisions.get("generator", "main"), licenses
            ),
            "expert": _lipsync_entry("expert", cfg.expert, cfg, stage, revisions.get("expert", "main"), licenses),
            "mouth_shape": _lipsync_entry(
                "mouth_shape", cfg.mouth_shape, cfg, stage, revisions.get("mouth_shape", "main"), licenses
            ),
        }
        components = {k: v for k, v in components.items() if v is not None}
        index = {
            "_class_name": "ShqipAvDubbingPipeline",
            "_shqip_av_version": shqip_av.__version__,
            "name": cfg.name or out.name,
            "source_language": cfg.source_language or None,
            "target_language": cfg.to,
            "lipsync": lipsync,
            "most_restrictive_license": most_restrictive([c["license"] for c in components.values()]),
            **components,
        }
        atomic_write_text(stage / "model_index.json", json.dumps(index, indent=2) + "\n")
        atomic_write_text(stage / "README.md", bundle_card(index))
        trained_on = _TRAINED_ON.pop(str(stage), set())
        if trained_on:  # what the included runs learned from: a takedown marks the bundle too
            from shqip_av.takedown import TRAINED_ON

            record = {"video_sha256": sorted(d for d in trained_on if not d.startswith(RESTRICTED))}
            restrictions = sorted(d[len(RESTRICTED) :] for d in trained_on if d.startswith(RESTRICTED))
            if restrictions:
                record["restrictions"] = restrictions
            atomic_write_text(stage / TRAINED_ON, json.dumps(record, indent=2) + "\n")
        record_owned(stage, OWNER_KIND, [p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()])
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _TRAINED_ON.pop(str(stage), None)
        raise
    old = out.parent / f".{out.name}.old"
    if (
        out.exists()
    ):  # swap: the previous bundle (all of it ours, checked above) goes only after the new one is complete
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


_ROLE = {
    "asr": "recognizes the speech of the source video, with timestamps",
    "mt": "translates each recognized segment (a translation .srt given by the user wins)",
    "tts": "speaks the translation",
    "generator": "regenerates the speaker's mouth so that it follows the new speech",
    "mouth_shape": "predicts the mouth's shape from the new speech; the speaker's own frames with that shape are retrieved",
    "expert": "scores audio-visual sync of the result (LSE-C/LSE-D in the dub's report)",
}


_LIPSYNC_TEXT = {
    "retrieval": "The mouth's shape is predicted from the new speech and the speaker's own frames with "
    "that shape are pasted in (no network paints pixels; runs on a CPU).",
    "generator": "A lip-sync generator regenerates the mouth from the new speech (best on a GPU).",
}


def bundle_card(index: dict) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    licence = index["most_restrictive_license"]
    data = ModelCardData(
        license=licence if licence != "unknown" else "other",
        library_name="shqip-av",
        tags=["shqip-av", "dubbing", "lip-sync", "synthetic-media", "albanian"],
        language=sorted({x for x in (index.get("source_language"), index.get("target_language")) if x}),
    )
    rows = []
    for name in COMPONENTS:
        c = index.get(name)
        if c is None:
            if name == "mt":
                rows.append(f"| {name} | (none: the user gives a translation .srt) | | | |")
            continue
        where = "included" if c["included"] else f"referenced: `{c['source']}` @ {c.get('revision', 'main')}"
        rows.append(f"| {name} | {_ROLE[name]} | `{c['class']}` | {where} | {c['license']} |")
    body = f"""# {index["name"]}: a shqip-av dubbing bundle

Dubs a talking-head video into another language with the lips following the new speech:
recognize → translate → speak → fit durations → lip-sync → paste back → render
(`python -m export dub IN.mp4 --bundle <this folder or Hub id> --to {index["target_language"]}`).

| component | what it does | class | where | licence |
|---|---|---|---|---|
{chr(10).join(rows)}

**Mouths: {index.get("lipsync", "generator")}.** {_LIPSYNC_TEXT[index.get("lipsync", "generator")]}

**Most restrictive licence: {licence}.** The bundle as a whole may be used only as its most
restrictive component allows{"; at least one component's licence is not known: check it before any use" if licence == "unknown" else ""}.

## Intended use

Dubbing videos whose speaker consented to it (for a generator fine-tuned to one person: that
person's release), for accessibility, education and research on Albanian speech technology.

## What is generated, and disclosure

The speech, and the speaker's mouth region in every frame where the new speech plays or the
original speaker talked, are synthetic. Every dubbed file says so in its container metadata and,
unless turned off, with a visible mark; the metadata is always written.

## Limits

Lip-sync quality follows the generator's training data: faces, languages and recording
conditions unlike it give worse mouths. Machine translation and synthetic voices make mistakes;
review a dub before publishing it. Do not use it to make anyone appear to say what they did not
consent to.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


@dataclass(frozen=True)
class ComponentEntry:
    """One component of model_index.json, typed: what loads it (``library``, ``cls``), from where
    (``source``: a folder inside the bundle when ``included``, else a Hub id at ``revision``), its
    licence, and what some kinds add (a TTS ``backend``, an MT ``family``, an ASR ``adapter`` with
    its ``base``, the run it was ``trained_from``)."""

    name: str
    library: str
    cls: str
    source: str
    included: bool
    license: str
    revision: str = "main"
    backend: str | None = None
    family: str | None = None
    adapter: str | None = None
    base: "ComponentEntry | None" = None
    trained_from: str | None = None

    @classmethod
    def parse(cls, name: str, raw: object, where: Path) -> "ComponentEntry":
        if not isinstance(raw, dict):
            raise BundleError(f"the bundle {where}: {name} in model_index.json is not an object")

        def text(key: str, default: str | None = None) -> str | None:
            value = raw.get(key, default)
            if value is not None and not isinstance(value, str):
                raise BundleError(f"the bundle {where}: {name}.{key} in model_index.json is not a string")
            return value

        source = text("source")
        if not source:
            raise BundleError(f"the bundle {where}: {name} has no source in model_index.json")
        base = raw.get("base")
        return cls(
            name=name,
            library=text("library", "") or "",
            cls=text("class", "") or "",
            source=source,
            included=bool(raw.get("included")),
            license=text("license", "unknown") or "unknown",
            revision=text("revision", "main") or "main",
            backend=text("backend"),
            family=text("family"),
            adapter=text("adapter"),
            base=cls.parse(f"{name}.base", base, where) if base is not None else None,
            trained_from=text("trained_from"),
        )


@dataclass
class Bundle:
    path: Path
    index: dict  # model_index.json as read (written back into reports as it is)
    components: dict[str, ComponentEntry] = field(default_factory=dict)  # its components, typed

    def entry(self, name: str) -> ComponentEntry:
        if name not in self.components:
            raise BundleError(f"the bundle {self.path} has no {name} component")
        return self.components[name]

    @property
    def name(self) -> str:
        return str(self.index.get("name") or self.path.name)

    def component(self, name: str) -> dict:
        entry = self.index.get(name)
        if entry is None:
            raise BundleError(f"the bundle {self.path} has no {name} component")
        return entry

    def source(self, name: str, entry: dict | None = None) -> tuple[str, str]:
        """(folder or Hub id, revision) to load a component from. An included component is a
        folder inside the bundle (no absolute path, no ``..``, no symlink out); anything else
        must be a Hub id."""
        from shqip_av.files import UnsafePathError, inside

        entry = entry or self.component(name)
        source = entry.get("source")
        if not isinstance(source, str) or not source:
            raise BundleError(f"the bundle {self.path}: {name} has no source in model_index.json")
        if entry.get("included"):
            try:
                folder = inside(self.path, source)
            except UnsafePathError:
                raise BundleError(
                    f"the bundle {self.path}: {name} points outside the bundle ({source!r}); "
                    "an included component must be a folder inside it"
                ) from None
            if not folder.is_dir():
                raise BundleError(f"the bundle {self.path} lacks its {name} folder ({source}/)")
            return str(folder), "main"
        if entry.get("backend") == "espeak":  # an espeak-ng voice name, checked when the dub starts
            return source, "main"
        if not _is_hub_id(source) or Path(source).is_absolute():
            raise BundleError(
                f"the bundle {self.path}: {name} names {source!r}, which is neither included in the "
                "bundle nor a Hub id (user/name)"
            )
        return source, str(entry.get("revision", "main"))

    @property
    def lipsync(self) -> str:
        """How this bundle's dubs make mouths: retrieval or generator."""
        return str(self.index.get("lipsync", "generator"))

    def load_mouth_shape(self):
        from shqip_av.components import KindError
        from shqip_av.components.mouth_shape import MouthShapeModel

        try:
            return MouthShapeModel.from_pretrained(
                self.source("mouth_shape")[0], option=f"the bundle's mouth shape model ({self.path})"
            )
        except KindError as e:
            raise BundleError(str(e)) from None

    def load_generator(self):
        from shqip_av.components.lipsync_generator import load_generator

        return load_generator(self.source("generator")[0], f"the bundle's generator ({self.path})")

    def load_expert(self):
        from shqip_av.components.sync_expert import load_expert

        return load_expert(self.source("expert")[0], f"the bundle's expert ({self.path})")

    def load_asr(self, language: str | None = None):
        """A train.asr LoadedModel (model, processor) for transcription; anything that keeps it
        from loading (a corrupt or pickled weights file, a Hub id not in the cache offline) is
        one line."""
        from shqip_av import ShqipError

        try:
            return self._load_asr(language)
        except ShqipError as e:
            raise BundleError(f"the bundle's asr ({self.path}): {e}") from None
        except Exception as e:  # noqa: BLE001 - whatever transformers/peft/torch raise on a bad file
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BundleError(f"the bundle's asr ({self.path}) cannot be loaded: {first[:300]}") from None

    def _load_asr(self, language: str | None = None):
        from shqip_av.components.whisper import (
            LoadedModel,
            configure_generation,
            load_for_inference,
            load_processor,
            load_whisper,
        )

        entry = self.component("asr")
        language = language or self.index.get("source_language") or "sq"
        source, revision = self.source("asr", entry)
        if entry.get("adapter"):
            from peft import PeftModel

            base, base_revision = self.source("asr", entry["base"])
            processor = load_processor(source)
            model = load_whisper(base, base_revision)
            configure_generation(model, processor.tokenizer, language, "transcribe")
            model = PeftModel.from_pretrained(model, source).eval()
            return LoadedModel(model, processor, f"{self.path}:asr", base)
        return load_for_inference(source, language=language, revision=revision)

    def load_mt(self):
        """(model, tokenizer, family) of the translation component."""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        entry = self.component("mt")
        source, revision = self.source("mt", entry)
        local = Path(source)
        if local.is_dir() and not any(
            (local / name).is_file()
            for name in (
                "tokenizer.json",
                "tokenizer_config.json",
                "source.spm",
                "sentencepiece.bpe.model",
                "vocab.json",
            )
        ):
            raise BundleError(
                f"the translation model in {local.name}/ has no tokenizer files (tokenizer_config.json, "
                "source.spm or tokenizer.json): rebuild the bundle from a complete model folder"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
            model = AutoModelForSeq2SeqLM.from_pretrained(source, revision=revision).eval()
        except Exception as e:  # noqa: BLE001 - corrupt, pickled or missing weights: one line
            raise BundleError(f"cannot load the translation model {source!r}: {str(e).splitlines()[0]}") from None
        return model, tokenizer, entry.get("family") or mt_family(source)


def load_bundle(source: str, revision: str = "main") -> Bundle:
    """A bundle from its folder or a Hub id (downloaded into the Hub cache)."""
    path = Path(source).expanduser()
    if not path.is_dir():
        if not _is_hub_id(source):
            raise BundleError(f"{source}: no such bundle folder")
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(source, revision=revision))
        except Exception as e:  # noqa: BLE001 - offline, missing repo, no access: one line
            # a name shaped like owner/name is also a relative path: say that neither was found
            raise BundleError(
                f"no bundle folder {source} here, and the Hub repo {source} cannot be downloaded: "
                f"{str(e).splitlines()[0]}"
            ) from None
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise BundleError(
            f"{path} is not a dubbing bundle (no model_index.json; make one with python -m export bundle)"
        )
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BundleError(
            f"{index_file}: not readable JSON ({str(e).splitlines()[0]}); rebuild the bundle with "
            "python -m export bundle"
        ) from None
    if not isinstance(index, dict):
        raise BundleError(f"{index_file}: not a bundle index (a JSON object is expected)")
    lipsync = index.get("lipsync", "generator")
    if lipsync not in LIPSYNC:
        raise BundleError(f"{index_file}: lipsync {lipsync!r} is not one of {', '.join(LIPSYNC)}")
    needed = ("asr", "tts", "expert", "mouth_shape" if lipsync == "retrieval" else "generator")
    missing = [name for name in needed if not isinstance(index.get(name), dict)]
    if missing:
        raise BundleError(
            f"the bundle {path} is missing {', '.join(missing)} (rebuild it with python -m export bundle)"
        )
    components = {name: ComponentEntry.parse(name, index[name], path) for name in COMPONENTS if index.get(name)}
    bundle = Bundle(path, index, components)
    for name in COMPONENTS:
        entry = index.get(name)
        if not isinstance(entry, dict):
            continue
        bundle.source(name, entry)  # outside the bundle, or an included folder that is gone: now, not mid-dub
        if isinstance(entry.get("base"), dict):
            bundle.source(name, entry["base"])
    _check_kinds(bundle)
    return bundle


def _check_kinds(bundle: Bundle) -> None:
    """Each included component is the kind of model its entry says (a generator and an expert
    swapped by hand, a Whisper where the expert should be: one line now, not a traceback later)."""
    from shqip_av.components import ASR_RUN, GENERATOR, SEQ2SEQ, SYNC_EXPERT, VITS, WHISPER, KindError, expect_kind

    from shqip_av.components import MOUTH_SHAPE

    expected = {"generator": (GENERATOR,), "expert": (SYNC_EXPERT,), "mt": (SEQ2SEQ,), "asr": (WHISPER, ASR_RUN),
                "mouth_shape": (MOUTH_SHAPE,)}  # fmt: skip
    for name, kinds in expected.items():
        entry = bundle.index.get(name)
        if not isinstance(entry, dict) or not entry.get("included") or entry.get("adapter"):
            continue
        try:
            expect_kind(bundle.source(name, entry)[0], kinds, f"the bundle's {name}")
        except KindError as e:
            raise BundleError(str(e)) from None
    tts = bundle.index["tts"]
    if tts.get("backend") == "vits" and tts.get("included"):
        try:
            expect_kind(bundle.source("tts", tts)[0], (VITS,), "the bundle's tts")
        except KindError as e:
            raise BundleError(str(e)) from None
