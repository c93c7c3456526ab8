"""``prepare_raw``: sources.yaml → raw/ (videos, 16 kHz audio, captions, info, manifest).

For every video behind every source entry, in this order (cheap decisions first, so nothing is
downloaded that would be refused):

1. already in raw/manifest.jsonl → skipped (reruns are no-ops);
2. listed in takedown.txt → refused (``takedown``);
3. no allow-listed licence and no consent record → refused (``license-not-allowed``/``no-consent``);
4. download (yt-dlp, resumable) or copy (local footage) into raw/.partial/<video_id>/;
5. check and normalise (collect.store), move to raw/<video_id>/ and clear the partial folder;
6. append the manifest line.

Steps 1–3 (metadata only) run here; 4–5 are ``fetch_video``, run on the engine the config names
(in this process, a process pool or Ray: shqip_av/engine.py); step 6 runs here again, in the
order of sources.yaml, so every engine writes the same manifest.

A refusal or failure is a line in raw/rejected.jsonl (one per source item, rewritten
atomically), never an exception that stops the other videos.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yt_dlp

from collect.consent import DEFAULT_ALLOWLIST, Admission, admit
from collect.download import VIDEO_EXTS, FetchError, FetchOptions, YtDlp, archive_key, classify, drop_archive_lines
from collect.sources import SourceEntry, load_sources
from collect.store import Rejected, StoreOptions, store_video
from shqip_av import engine
from shqip_av.config import option, save_config
from shqip_av.files import DatasetRoot, atomic_copy, remove_tree, safe_id, sha256_file
from shqip_av.log import progress
from shqip_av.manifest import JsonlAppender, KeyedJsonl, read_jsonl
from shqip_av.records import Rejection, Rights, SourceInfo
from shqip_av.takedown import TakedownList

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    root: str = option("data", "dataset root; everything collect writes is inside it")
    sources: str = option("", "sources file (default: <root>/sources.yaml)")
    license_allowlist: list[str] = option(
        help="licence families admitted without a consent record", factory=lambda: list(DEFAULT_ALLOWLIST)
    )
    caption_languages: list[str] = option(help="uploader caption languages kept as transcripts", factory=lambda: ["sq"])
    min_duration: float = option(1.0, "videos shorter than this (seconds) are refused", min=0)
    format: str = option(FetchOptions.format, "yt-dlp format selection")
    retries: int = option(3, "download retries (exponential backoff)", min=0, max=100)
    backoff_seconds: float = option(5.0, "first retry delay; doubles each retry", min=0, max=3600)
    rate_limit: str = option("", "download rate limit in bytes/s, yt-dlp syntax such as 2M (empty: none)")
    sleep_interval: float = option(0.0, "seconds to wait between downloads", min=0, max=3600)
    cookies: str = option("", "Netscape cookies.txt for sources that need a login (never logged)")
    socket_timeout: float = option(30.0, "network timeout in seconds", above=0, max=3600)
    workers: int = option(
        1, "videos fetched in parallel (processes; with --engine ray, Ray workers of one CPU each)", min=1, max=4096
    )
    engine: str = option(
        "pool", "pool (local processes) or ray (Ray actors on a local or an existing cluster)", choices=engine.ENGINES
    )
    ray_address: str = option(
        "local",
        "with --engine ray: 'local' starts Ray on this machine (--workers CPUs); "
        "otherwise the address of a running cluster, e.g. ray://head:10001",
        flags=["--address"],
    )
    max_retries: int = option(2, "tries again for a video whose worker process died", min=0, max=100)


@dataclass
class CollectStats:
    sources: int = 0
    collected: int = 0
    already: int = 0
    rejected: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in self.rejected.most_common()) or "none"
        return (
            f"collect: {self.sources} source entries; {self.collected} videos collected, "
            f"{self.already} already in raw/; refused: {reasons}"
        )


def video_id_for(info: dict) -> str:
    """The dataset's id of a platform video: 'yt-<id>' for YouTube, '<site>-<id>' otherwise;
    generic web pages get a hash of their URL because their ids (file stems) collide."""
    extractor = (info.get("extractor_key") or info.get("ie_key") or "web").lower()
    vid = str(info.get("id") or "")
    if extractor == "youtube" and vid:
        return f"yt-{safe_id(vid)}"
    if extractor in ("generic", "html5mediaembed") or not vid:
        url = info.get("webpage_url") or info.get("url") or ""
        return "web-" + hashlib.sha1(f"{url}#{vid}".encode()).hexdigest()[:12]
    return f"{safe_id(extractor, 20)}-{safe_id(vid)}"


def _iso_date(yyyymmdd: str | None) -> str | None:
    if yyyymmdd and len(str(yyyymmdd)) == 8 and str(yyyymmdd).isdigit():
        s = str(yyyymmdd)
        return f"{s[:4]}-{s[4:6]}-{s[6:]}"
    return yyyymmdd


def _clean_info(info: dict) -> dict:
    """info.json as kept in raw/: yt-dlp's sanitised dict without request headers or cookies."""

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in ("http_headers", "cookies", "__files_to_move")}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    return strip(yt_dlp.YoutubeDL.sanitize_info(info))


@dataclass
class FetchJob:
    """One admitted video, ready to fetch: its metadata (yt-dlp's, or built for a local file),
    where the bytes come from, and the fixed parts of its record."""

    video_id: str
    source: SourceInfo
    rights: Rights
    info: dict
    file: str | None = None  # local footage; None: download with yt-dlp from ``info``
    sidecars: dict[str, str] = field(default_factory=dict)  # language → local caption file
    sync: str | None = None  # the sources entry's sync verdict and offset (collect.table)
    av_offset: int | None = None


@dataclass
class Fetched:
    """What fetching one video came to: its raw-manifest record, or a refusal, or a failure of
    the disk that must stop the run (``fatal``)."""

    video_id: str
    record: dict | None = None
    refusal: tuple | None = None  # (reason, detail, value)
    fatal: str | None = None


def fetch_video(job: FetchJob, root: str, cfg: CollectConfig) -> Fetched:
    """Download (yt-dlp, resumable) or copy one admitted video into raw/.partial/<video_id>/,
    check and normalise it and move it to raw/<video_id>/ (collect.store). A pure function of its
    arguments, so any engine may run it; the caller writes the manifests."""
    droot = DatasetRoot(root)
    partial = droot.path("raw", ".partial", job.video_id)
    try:
        ytdlp = _ytdlp(cfg, droot)
        if job.file is None:
            video_file = ytdlp.download(job.info, partial)
            info = _clean_info(job.info)
        else:
            partial.mkdir(parents=True, exist_ok=True)
            video_file = atomic_copy(Path(job.file), partial / f"video{Path(job.file).suffix.lower()}")
            for lang, sidecar in job.sidecars.items():
                atomic_copy(Path(sidecar), partial / f"video.{lang}.vtt")
            info = job.info
        record = store_video(
            droot,
            partial,
            video_file,
            video_id=job.video_id,
            source=job.source,
            rights=job.rights,
            info=info,
            options=_store_options(cfg),
            sync=job.sync,
            av_offset=job.av_offset,
        )
    except FetchError as e:  # the partial download stays: the next run continues it
        return Fetched(job.video_id, refusal=(e.reason, str(e)[:500], None))
    except Rejected as r:
        remove_tree(partial)
        return Fetched(job.video_id, refusal=(r.reason, r.detail, r.value))
    except OSError as e:  # disk full, permissions: the run stops with a clear line
        return Fetched(job.video_id, fatal=str(e))
    except Exception as e:  # noqa: BLE001 - one bad video never stops the others
        log.debug("%s", traceback.format_exc())
        return Fetched(job.video_id, refusal=("failed", f"{type(e).__name__}: {e}"[:500], None))
    remove_tree(partial)
    if job.file is None:
        ytdlp.pause()  # gentle with the platform, per worker
    return Fetched(job.video_id, record=record.to_dict())


def _ytdlp(cfg: CollectConfig, root: DatasetRoot) -> YtDlp:
    return YtDlp(
        FetchOptions(
            format=cfg.format,
            retries=cfg.retries,
            backoff_seconds=cfg.backoff_seconds,
            rate_limit=cfg.rate_limit,
            sleep_interval=cfg.sleep_interval,
            cookies=cfg.cookies,
            caption_languages=list(cfg.caption_languages),
            socket_timeout=cfg.socket_timeout,
        ),
        archive=root.path("raw", "download-archive.txt"),
    )


def _store_options(cfg: CollectConfig) -> StoreOptions:
    return StoreOptions(
        min_duration=cfg.min_duration, caption_languages=tuple(c.lower() for c in cfg.caption_languages)
    )


def engine_of(cfg: CollectConfig) -> engine.Engine:
    return engine.Engine(
        kind=cfg.engine,
        workers=cfg.workers,
        address=cfg.ray_address,
        max_retries=cfg.max_retries,
        root=cfg.root,
        marker="raw/collect.config.yaml",
        what="video",
    )


class Collector:
    """Plans on the calling process (listing, takedown, consent: metadata only, nothing is
    downloaded that would be refused), fetches on the engine, and writes the manifests here, in
    the order of sources.yaml whichever engine fetched, so every engine gives the same files."""

    def __init__(self, cfg: CollectConfig):
        self.cfg = cfg
        self.root = DatasetRoot(cfg.root)
        self.raw = self.root.path("raw")
        self.sources = load_sources(cfg.sources or self.root.sources)  # errors before any work
        self.takedown = TakedownList.load(self.root.takedown)
        self.raw.mkdir(parents=True, exist_ok=True)
        self.manifest = JsonlAppender(self.raw / "manifest.jsonl")
        self.done = {r["video_id"]: r for r in read_jsonl(self.raw / "manifest.jsonl")}
        self.rejected = KeyedJsonl(self.raw / "rejected.jsonl", key=lambda r: r["key"])
        self.archive = self.raw / "download-archive.txt"
        self.ytdlp = _ytdlp(cfg, self.root)
        self.store_options = _store_options(cfg)
        self.stats = CollectStats(sources=len(self.sources.entries))
        self.jobs: list[FetchJob] = []
        self.planned: set[str] = set()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _reject(self, key: str, reason: str, detail: str, *, value=None, video_id=None, url=None) -> None:
        record = Rejection(
            key=key, stage="collect", reason=reason, detail=detail, value=value, video_id=video_id, url=url
        ).to_dict()
        self.rejected.put(record, same=Rejection.same)
        self.stats.rejected[reason] += 1
        log.info("refused %s: %s (%s)", key, reason, detail)

    def _admit(
        self, entry: SourceEntry, video_id: str, source: SourceInfo, platform_license: str | None
    ) -> Admission | None:
        withdrawn = self.takedown.match(
            video_id=video_id,
            platform_id=source.id,
            url=source.url,
            channel_id=source.channel_id,
            channel=source.channel,
            subject=entry.consent.subject if entry.consent else None,
        )
        if withdrawn:
            self._reject(
                video_id,
                "takedown",
                f"withdrawn by takedown.txt entry '{withdrawn}'",
                video_id=video_id,
                url=source.url,
            )
            return None
        decision = admit(platform_license, entry.consent, self.cfg.license_allowlist, entry.license)
        if not decision.admitted:
            self._reject(
                video_id, decision.reason, decision.detail, value=decision.license, video_id=video_id, url=source.url
            )
            return None
        return decision

    def _known(self, video_id: str) -> bool:
        """Collected already, or planned by an earlier entry of this run."""
        if video_id in self.done or video_id in self.planned:
            self.stats.already += 1
            return True
        return False

    def _plan(self, job: FetchJob) -> None:
        self.jobs.append(job)
        self.planned.add(job.video_id)

    def _commit(self, job: FetchJob, fetched: Fetched) -> None:
        if fetched.fatal:
            raise SystemExit(f"error: collecting {job.source.url}: {fetched.fatal}")
        if fetched.refusal:
            reason, detail, value = fetched.refusal
            self._reject(job.video_id, reason, detail, value=value, video_id=job.video_id, url=job.source.url)
            return
        self.manifest.append(fetched.record)
        self.done[job.video_id] = fetched.record
        self.rejected.discard(job.video_id)
        self.stats.collected += 1
        log.info("collected %s (%.1f s, %s)", job.video_id, fetched.record["media"]["duration"], job.rights.basis)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> CollectStats:
        if self.cfg.engine == "ray":  # a refused Ray start must leave the record of the run that built raw/
            engine.connect_ray(engine_of(self.cfg))
        save_config(self.cfg, self.raw / "collect.config.yaml")
        for entry in progress(self.sources.entries, desc="collect: listing", unit="source"):
            try:
                if entry.url:
                    self._plan_url(entry)
                else:
                    self._plan_path(entry)
            except OSError as e:  # disk full, permissions: stop with a clear line, state stays consistent
                raise SystemExit(f"error: collecting {entry.target} (sources.yaml line {entry.line}): {e}") from None
        # yt-dlp finished these once but our manifest lacks them (a run killed in between): they must
        # not be skipped as archived now. Done here, before any worker appends to the archive.
        keys = {archive_key(j.info) for j in self.jobs if j.file is None} - {None}
        if keys:
            drop_archive_lines(self.archive, lambda extractor, vid: (extractor, vid) in keys)
        order = {job.video_id: i for i, job in enumerate(self.jobs)}
        finished: dict[int, tuple[FetchJob, Fetched]] = {}
        next_up = 0
        on = engine_of(self.cfg)
        runs = engine.run(
            fetch_video,
            self.jobs,
            (engine.worker_root(on), self.cfg),
            on,
            name=lambda job: job.video_id,
            lost=lambda job, why: Fetched(job.video_id, refusal=("failed", why, None)),
        )
        for job, fetched in progress(runs, desc="collect", total=len(self.jobs), unit="video"):
            finished[order[job.video_id]] = (job, fetched)
            while next_up in finished:  # in sources.yaml order: the same manifest on every engine
                self._commit(*finished.pop(next_up))
                next_up += 1
        return self.stats

    def _plan_url(self, entry: SourceEntry) -> None:
        for info, url, error in self.ytdlp.list_videos(entry.url, entry.max_videos):
            if error is not None:
                self._reject(url, classify(error), str(error).replace("ERROR: ", "", 1)[:500], url=url)
                continue
            extractor = (info.get("extractor_key") or info.get("ie_key") or "generic").lower()
            video_id = video_id_for(info)
            if self._known(video_id):
                continue
            source = SourceInfo(
                url=info.get("webpage_url") or url,
                extractor=extractor,
                id=info.get("id"),
                channel_id=info.get("channel_id") or info.get("uploader_id"),
                channel=info.get("channel") or info.get("uploader"),
                title=info.get("title") or entry.title,
                upload_date=_iso_date(info.get("upload_date")),
                language=info.get("language") or entry.language,
                speaker=entry.speaker,
                dialect=entry.dialect,
            )
            decision = self._admit(entry, video_id, source, info.get("license"))
            if decision is None:
                continue
            if not entry.captions:
                info = {**info, "subtitles": {}}
            self._plan(
                FetchJob(video_id, source, _rights(decision, entry), info, sync=entry.sync, av_offset=entry.av_offset)
            )

    def _plan_path(self, entry: SourceEntry) -> None:
        path = entry.path
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
            if not files:
                self._reject(str(path), "no-videos", f"folder {path} holds no video files")
        elif path.is_file():
            files = [path]
        else:
            base = self.sources.path.parent.resolve()
            shown = path.resolve().relative_to(base).as_posix() if base in path.resolve().parents else path.name
            withdrawn = self.takedown.match(
                url=f"local:{shown}",
                channel=entry.consent.subject if entry.consent else None,
                subject=entry.consent.subject if entry.consent else None,
            )
            if withdrawn:  # a takedown deleted the file: say why it is gone, not merely that it is
                self._reject(
                    str(path),
                    "takedown",
                    f"withdrawn by takedown.txt entry '{withdrawn}' (its file was deleted by the takedown)",
                )
            else:
                self._reject(str(path), "missing-file", f"{path} does not exist (sources.yaml line {entry.line})")
            return
        base = self.sources.path.parent.resolve()
        for file in files:
            rel = file.resolve()
            shown = rel.relative_to(base).as_posix() if base in rel.parents else file.name
            video_id = f"local-{sha256_file(file)[:16]}"  # content-addressed: a renamed file is the same video
            if self._known(video_id):
                continue
            source = SourceInfo(
                url=f"local:{shown}",
                extractor="local",
                id=video_id,
                title=entry.title or file.stem,
                language=entry.language,
                speaker=entry.speaker,
                dialect=entry.dialect,
                channel=entry.consent.subject if entry.consent else None,
            )
            decision = self._admit(entry, video_id, source, None)
            if decision is None:
                continue
            sidecars = {}
            if entry.captions:
                for lang in self.store_options.caption_languages:
                    sidecar = file.with_name(f"{file.stem}.{lang}.vtt")
                    if sidecar.is_file():
                        sidecars[lang] = str(sidecar.resolve())
            info = {
                "extractor": "local",
                "id": video_id,
                "title": source.title,
                "filename": file.name,
                "source_path": shown,
                "filesize": file.stat().st_size,
                "license": entry.license,
                "language": entry.language,
            }
            self._plan(
                FetchJob(
                    video_id,
                    source,
                    _rights(decision, entry),
                    info,
                    file=str(file.resolve()),
                    sidecars=sidecars,
                    sync=entry.sync,
                    av_offset=entry.av_offset,
                )  # fmt: skip
            )


def _rights(decision: Admission, entry: SourceEntry) -> Rights:
    return Rights(license=decision.license, consent=entry.consent, basis=decision.basis, restriction=entry.restriction)


def prepare_raw(cfg: CollectConfig) -> CollectStats:
    """Collect everything sources.yaml lists into ``cfg.root``/raw; returns the run's counts."""
    from shqip_av.config import validate
    from shqip_av.lock import stage_lock

    validate(cfg)
    with stage_lock(cfg.root, "collect", create=True):
        return Collector(cfg).run()  # sources.yaml and takedown.txt are checked before any download
