"""python -m cards publish --root data --repo user/name [--private] [--dry-run] [--run runs/asr/<name> | --bundle exports/<name> | --space space/]

Publishes the dataset (shards, shards/index.json, the card and its pictures) as a Hub dataset
repo, or with ``--run`` a run (train.asr: adapter or model, processor, card, metrics; a sync expert
a generator or a landmark sync judge: its model folder, card, metrics) as a model repo, or with ``--bundle`` a dubbing
bundle (export bundle: model_index.json, its card, the included components) as a model repo, or
with ``--space`` the dubbing app's Space folder (export space) as a Gradio Space repo, through
huggingface_hub.

1. The upload is assembled first, always, in <root>/cards/upload/<repo>/ (files hard-linked where
   the file system allows, else copied): exactly the files and repo paths that will be sent.
   ``--dry-run`` stops here and lists them. A dataset whose shards do not verify against
   shards/index.json is never assembled (cards/facts.py).
2. The repo's current files are listed. Files already there with the same content (sha256 for
   LFS files, the git blob id otherwise) are skipped, so an interrupted publish resumes.
3. Shards go up in commits of at most ``chunk_bytes``; the last commit carries the card, the
   index and the deletions: shard or picture files in the repo that the dataset no longer has
   (after a takedown and a re-shard, the withdrawn samples' old shards). The card appears only
   once every shard is up, and nothing is reported as published before that last commit lands.

The token comes from $HF_TOKEN or the huggingface_hub login (``hf auth login``); it goes to
huggingface_hub only (which sends it in the Authorization header) and is never logged or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from shqip_av.config import option, validate
from shqip_av.files import DatasetRoot, safe_id
from shqip_av.log import get_logger

from cards.facts import CardError

log = get_logger(__name__)

# repo paths a dataset publish owns: files there that the dataset no longer has are deleted
DATASET_OWNED = ("shards/", "assets/")


@dataclass
class PublishConfig:
    root: str = option("data", "dataset root")
    repo: str = option("", "Hub repo to publish to (user/name)")
    run: str = option(
        "",
        "publish this run (runs/asr/<name> or a sync expert's runs/lipsync/<name>) as a model "
        "repo instead of the dataset",
    )
    bundle: str = option(
        "", "publish this dubbing bundle (exports/<name>, from python -m export bundle) as a model repo"
    )
    space: str = option("", "publish this Space folder (python -m export space) as a Gradio Space repo")
    private: bool = option(False, "create the repo private (an existing repo keeps its visibility)")
    dry_run: bool = option(False, "assemble and list what would be uploaded; send nothing")
    revision: str = option("main", "branch to commit to")
    chunk_bytes: int = option(2_000_000_000, "most bytes of shards per commit", min=1)
    contact: str = option("", "takedown contact written into the dataset card")
    consent_license: str = option("other", "Hub licence id the dataset card gives consent-only videos")
    dataset: str = option("", "with --run: Hub id of the dataset the model was trained on")
    max_delete_share: float = option(
        0.25, "largest share of the repo's shards one publish may delete (more needs allow_delete)", min=0, max=1
    )
    allow_delete: bool = option(
        False, "delete more of the repo's shards than max_delete_share allows (after a large takedown, say)"
    )


@dataclass(frozen=True)
class UploadFile:
    path_in_repo: str
    local: Path
    size: int
    sha256: str
    git_sha1: str


def _hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file: the Hub identifies LFS files by the first, others by the second."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def _sources_dataset(cfg: PublishConfig) -> list[tuple[str, Path, str | None]]:
    """(repo path, local file, sha256 when already known) of a dataset upload. The card build has
    just verified every shard against the index, so the shards' sha256 is taken from there."""
    from cards.dataset_card import DatasetCardConfig, build_dataset_card

    root = DatasetRoot(cfg.root)
    card = build_dataset_card(
        DatasetCardConfig(root=cfg.root, repo=cfg.repo, contact=cfg.contact, consent_license=cfg.consent_license)
    )
    index = json.loads(root.path("shards", "index.json").read_text(encoding="utf-8"))
    files = [("README.md", card, None)]
    files += [(f"assets/{p.name}", p, None) for p in sorted((card.parent / "assets").glob("*.png"))]
    files.append(("shards/index.json", root.path("shards", "index.json"), None))
    for split in ("train", "validation", "test"):
        files += [
            (e["path"], root.path(e["path"]), e["sha256"]) for e in index["splits"].get(split, {}).get("shards", [])
        ]
    return files


def _sources_model(cfg: PublishConfig) -> list[tuple[str, Path, str | None]]:
    from cards.model_card import (
        ModelCardConfig,
        build_model_card,
        is_expert_run,
        is_generator_run,
        is_judge_run,
        resolve_run,
    )

    run = resolve_run(cfg.run, cfg.root)
    card = build_model_card(ModelCardConfig(run=str(run), root=cfg.root, dataset=cfg.dataset, repo=cfg.repo))
    files = [("README.md", card), ("metrics.json", run / "metrics.json"), ("train_config.yaml", run / "config.yaml")]
    if is_expert_run(run):  # config.json + model.safetensors (+ thresholds.json): SyncExpert.from_pretrained(repo)
        folders = [run / "expert"]
    elif is_generator_run(run):
        folders = [run / "generator"]
    elif is_judge_run(run):  # LandmarkSyncJudge.from_pretrained(repo), thresholds.json beside it
        folders = [run / "judge"]
    else:
        folders = [run / "adapter" if (run / "adapter").is_dir() else run / "model", run / "processor"]
    for folder in folders:
        _refuse_outward_links(folder, cfg.run)
        files += [(p.name, p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "README.md"]
    names = [name for name, _ in files]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise CardError(f"{run}: {clash[0]} exists in more than one of the folders to upload")
    return [(name, path, None) for name, path in files]


def _bundle_folder(cfg: PublishConfig) -> Path:
    folder = Path(cfg.bundle)
    if not folder.is_dir() and not folder.is_absolute() and DatasetRoot(cfg.root).root.is_dir():
        folder = DatasetRoot(cfg.root).path(cfg.bundle)
    if not folder.is_dir():
        raise CardError(f"{cfg.bundle}: no such bundle folder")
    return folder.resolve()


def _sources_bundle(cfg: PublishConfig) -> list[tuple[str, Path, str | None]]:
    """Every file of a dubbing bundle, at its path in the bundle (the Hub repo mirrors the folder)."""
    from shqip_av.files import OWNER_RECORD
    from shqip_av.takedown import WITHDRAWN_MARKER

    folder = _bundle_folder(cfg)
    if not (folder / "model_index.json").is_file() or not (folder / "README.md").is_file():
        raise CardError(
            f"{cfg.bundle}: not a dubbing bundle (no model_index.json and README.md; "
            "make one with python -m export bundle)"
        )
    if (folder / WITHDRAWN_MARKER).is_file():
        raise CardError(
            f"{cfg.bundle}: a component of this bundle was trained on data that has since been "
            f"withdrawn ({WITHDRAWN_MARKER}); rebuild it from retrained runs. Nothing was sent"
        )
    _refuse_outward_links(folder, cfg.bundle)
    return [
        (p.relative_to(folder).as_posix(), p, None)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != OWNER_RECORD
    ]


def _space_folder(cfg: PublishConfig) -> Path:
    folder = Path(cfg.space)
    if not folder.is_dir():
        raise CardError(f"{cfg.space}: no such Space folder")
    return folder.resolve()


def _sources_space(cfg: PublishConfig) -> list[tuple[str, Path, str | None]]:
    """Every file of a Space folder from python -m export space, at its path in the folder."""
    from shqip_av.files import OWNER_RECORD

    folder = _space_folder(cfg)
    readme = folder / "README.md"
    if not (folder / "app.py").is_file() or not readme.is_file() or "sdk: gradio" not in readme.read_text("utf-8"):
        raise CardError(
            f"{cfg.space}: not a Space folder (no app.py and README.md with sdk: gradio; "
            "make one with python -m export space)"
        )
    _refuse_outward_links(folder, cfg.space)
    return [
        (p.relative_to(folder).as_posix(), p, None)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != OWNER_RECORD and "__pycache__" not in p.parts
    ]


def _refuse_outward_links(folder: Path, name: str) -> None:
    """Nothing outside the folder being published is ever staged: a symlink that leaves it (or
    dangles) stops the publish with one line."""
    from shqip_av.files import symlinks_leaving

    leaving = symlinks_leaving(folder)
    if leaving:
        raise CardError(
            f"{name}: {leaving[0]} is a symlink to a file outside the folder; it would upload that "
            "file. Replace it with the file itself or remove it (nothing was sent)"
        )


def staging_dir(cfg: PublishConfig) -> Path:
    if cfg.space:
        return _space_folder(cfg).parent / ".upload" / safe_id(cfg.repo.replace("/", "--"))
    if cfg.bundle:
        return _bundle_folder(cfg).parent / ".upload" / safe_id(cfg.repo.replace("/", "--"))
    return DatasetRoot(cfg.root).path("cards", "upload", safe_id(cfg.repo.replace("/", "--")))


def check_repo_id(repo: str) -> None:
    """``user/name`` as the Hub accepts it (letters, digits, ``-_.``, at most 96 each, no ``..``,
    no leading or trailing ``-``/``.``): refused here, before anything is assembled."""
    import re

    part = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
    if not repo or not re.fullmatch(f"{part}/{part}", repo) or ".." in repo or "--" in repo or repo.endswith(".git"):
        shown = repo if len(repo) <= 60 else repo[:57] + "..."
        raise CardError(
            f"--repo {shown!r}: give the Hub repo as user/name (letters, digits, - _ and ., at most "
            "96 characters each, no '..' or '--')"
        )


def check_restrictions(cfg: PublishConfig) -> None:
    """Footage collected with a ``restriction`` (sources.yaml; e.g. third-party test clips) is
    never published, nor anything that learned from it (its trained_on.json says so)."""
    from cards.model_card import resolve_run
    from shqip_av.manifest import read_jsonl
    from shqip_av.takedown import trained_on_restrictions

    if cfg.space:  # a Space carries its bundle in bundle/ (or names a Hub id, published on its own)
        bundle = _space_folder(cfg) / "bundle"
        found = trained_on_restrictions(bundle) if bundle.is_dir() else []
        what = f"{cfg.space}'s bundle learned from footage"
    elif cfg.bundle or cfg.run:
        folder = _bundle_folder(cfg) if cfg.bundle else resolve_run(cfg.run, cfg.root)
        found = trained_on_restrictions(folder)
        what = f"{cfg.bundle or cfg.run} learned from footage"
    else:
        manifest = DatasetRoot(cfg.root).path("raw", "manifest.jsonl")
        records = read_jsonl(manifest) if manifest.is_file() else []
        found = sorted({(r.get("rights") or {}).get("restriction") for r in records} - {None, ""})
        what = f"{cfg.root} holds footage"
    if found:
        raise CardError(f"{what} collected with the restriction {found[0]!r}: it is not published (nothing was sent)")


def assemble(cfg: PublishConfig) -> tuple[Path, list[UploadFile]]:
    """Build the upload folder (the exact content to send) and describe its files."""
    check_repo_id(cfg.repo)
    if sum(bool(x) for x in (cfg.run, cfg.bundle, cfg.space)) > 1:
        raise CardError("give one of --run, --bundle and --space")
    check_restrictions(cfg)
    if cfg.space:
        sources = _sources_space(cfg)
    else:
        sources = _sources_bundle(cfg) if cfg.bundle else _sources_model(cfg) if cfg.run else _sources_dataset(cfg)
    folder = staging_dir(cfg)
    if folder.exists():
        shutil.rmtree(folder)
    files = []
    for path_in_repo, src, known_sha256 in sources:
        dst = folder / path_in_repo
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)  # shards can be large: no second copy where the file system allows
        except OSError:
            shutil.copy2(src, dst)
        # shards are LFS files, identified by sha256 alone: no second read of gigabytes
        sha256, sha1 = (known_sha256, "") if known_sha256 else _hashes(dst)
        files.append(UploadFile(path_in_repo, dst, dst.stat().st_size, sha256, sha1))
    return folder, files


def remote_state(api, repo: str, repo_type: str, revision: str) -> dict[str, str]:
    """path → content id (sha256 for LFS files, git blob sha1 otherwise) of the repo's files."""
    state = {}
    for entry in api.list_repo_tree(repo, repo_type=repo_type, revision=revision, recursive=True):
        if getattr(entry, "blob_id", None) is None and getattr(entry, "lfs", None) is None:
            continue  # a folder
        lfs = getattr(entry, "lfs", None)
        state[entry.path] = (lfs.sha256 if hasattr(lfs, "sha256") else lfs["sha256"]) if lfs else entry.blob_id
    return state


def commit_plan(files: list[UploadFile], remote: dict[str, str], *, owned: tuple[str, ...], chunk_bytes: int):
    """The commits to make, as huggingface_hub operations: [[CommitOperationAdd…], …, [last]].

    Files whose content is already in the repo are left out. Big files (shards) come first, in
    commits of at most ``chunk_bytes``; the last commit has the small files (card, index, pictures)
    and the deletions of repo files under ``owned`` prefixes that are no longer part of the upload.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    def needed(f: UploadFile) -> bool:
        return remote.get(f.path_in_repo) not in (f.sha256, f.git_sha1)

    big = [f for f in files if f.path_in_repo.endswith(".tar") or f.size > 10_000_000]
    small = [f for f in files if f not in big]
    commits, current, size = [], [], 0
    for f in (f for f in big if needed(f)):
        if current and size + f.size > chunk_bytes:
            commits.append(current)
            current, size = [], 0
        current.append(CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local)))
        size += f.size
    if current:
        commits.append(current)
    keep = {f.path_in_repo for f in files}
    last = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local)) for f in small if needed(f)]
    last += [
        CommitOperationDelete(path_in_repo=path)
        for path in sorted(remote)
        if path.startswith(owned) and path not in keep
    ]
    if last:
        commits.append(last)
    return commits


def check_deletions(commits: list, remote: dict[str, str], cfg: PublishConfig) -> None:
    """Refuse, before any commit, a publish that would delete a large share of the repo's shards:
    a local dataset that lost its shards must not take the published copy with it."""
    from huggingface_hub import CommitOperationDelete

    shards = [p for p in remote if p.startswith("shards/") and p.endswith(".tar")]
    doomed = [
        op.path_in_repo
        for ops in commits
        for op in ops
        if isinstance(op, CommitOperationDelete) and op.path_in_repo in shards
    ]
    if shards and doomed and not cfg.allow_delete and len(doomed) > cfg.max_delete_share * len(shards):
        raise CardError(
            f"this publish would delete {len(doomed)} of the {len(shards)} shards in {cfg.repo} "
            f"(more than {cfg.max_delete_share:.0%}), e.g. {doomed[0]}; nothing was sent. Check the "
            f"local shards; if the deletion is intended (a takedown), rerun with --allow-delete"
        )


def publish(cfg: PublishConfig) -> dict:
    """Assemble, then (unless dry-run) upload; returns a summary of what was done."""
    from shqip_av.lock import stage_lock

    # a bundle is not part of a dataset root: its own folder's parent holds the lock and the staging
    folder = _space_folder(cfg).parent if cfg.space else _bundle_folder(cfg).parent if cfg.bundle else cfg.root
    with stage_lock(folder, "publish"):
        return _publish(cfg)


def _publish(cfg: PublishConfig) -> dict:
    from huggingface_hub import HfApi, get_token

    from shqip_av.hub import describe, upload_errors

    validate(cfg)
    token = None if cfg.dry_run else get_token()
    if not cfg.dry_run and not token:  # said before any work is done
        raise CardError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was published)")
    folder, files = assemble(cfg)
    total = sum(f.size for f in files)
    summary = {
        "repo": cfg.repo,
        "folder": str(folder),
        "files": [(f.path_in_repo, f.size) for f in files],
        "bytes": total,
        "published": False,
    }
    if cfg.dry_run:
        return summary

    repo_type = "space" if cfg.space else "model" if cfg.run or cfg.bundle else "dataset"
    api = HfApi(token=token)
    done = 0
    try:
        api.create_repo(cfg.repo, repo_type=repo_type, private=cfg.private, exist_ok=True,
                        **({"space_sdk": "gradio"} if cfg.space else {}))  # fmt: skip
        remote = remote_state(api, cfg.repo, repo_type, cfg.revision)
        # a model repo keeps files of ours it no longer gets; a dataset repo loses stale shards
        owned = DATASET_OWNED if repo_type == "dataset" else ()
        commits = commit_plan(files, remote, owned=owned, chunk_bytes=cfg.chunk_bytes)
        check_deletions(commits, remote, cfg)
        for i, operations in enumerate(commits, 1):
            api.create_commit(
                cfg.repo,
                operations,
                repo_type=repo_type,
                revision=cfg.revision,
                commit_message=f"shqip-av publish ({i}/{len(commits)})",
            )
            done = i
    except upload_errors() as e:
        where = f"after {done} of its commits" if done else "before anything was committed"
        raise CardError(
            f"publish to {cfg.repo} failed {where}: {describe(e)} (nothing reported as published; rerun to continue)"
        ) from None
    summary.update(
        published=True,
        commits=len(commits),
        url=f"https://huggingface.co/{ {'dataset': 'datasets/', 'space': 'spaces/'}.get(repo_type, '') }{cfg.repo}",
    )
    return summary
