"""Model packs: a catalog of InsightFace packs, and download, import, verify and remove.

Operators are not Python developers: a pack must arrive with visible progress, be checked, and land
in place whole or not at all. `PackManager` does that in the folder the engine already reads
(`$INSIGHTFACE_HOME/models`, by default `~/.insightface/models`; see `engine.resolve_model_dir`).

Threading: every method blocks; a GUI runs `download`/`import_pack`/`verify` on a worker thread.
`progress` is called on that worker thread (forward it to the UI with a queued signal), and
`cancelled` is polled between chunks of at most 64 KiB, so a cancel takes effect at the next chunk
(or, on a connection that has stalled completely, when the read timeout fires).

On disk, inside `root`:
  NAME/                              an installed pack (ONNX files + `facebatch-pack.json`)
  .downloads/NAME.zip.part(.json)    a partial download, kept for resume after cancel or failure
  .NAME.staging-PID-HEX/             an install in progress; renamed to NAME/ when complete
  .NAME.removing-PID-HEX/            a pack being removed (renamed away first, then deleted)
Folders starting with a dot are never packs; stale ones of dead processes are swept on start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from facebatch_gui import __version__
from facebatch_gui.core.errors import ModelPackError

LICENCE_NOTICE = (
    "InsightFace's pretrained models are available for non-commercial research purposes only "
    "(the InsightFace code is MIT-licensed; the model weights are not). Commercial use needs a "
    "licence from InsightFace: https://github.com/deepinsight/insightface#license"
)
RELEASE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"
# insightface 2.x downloads from this release tag; tried when the v0.7 asset cannot be fetched.
MIRROR_URL = "https://github.com/deepinsight/insightface/releases/download/model-zoo/{name}.zip"
MANIFEST = "facebatch-pack.json"
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class PackInfo:
    """A pack FaceBatch knows. `size`/`sha256` are of the release zip; None when unknown."""

    name: str
    description: str
    size: int | None
    sha256: str | None
    urls: tuple[str, ...]
    licence: str = LICENCE_NOTICE

    @property
    def url(self) -> str:
        return self.urls[0]


def _known(name: str, description: str, size: int, sha256: str) -> PackInfo:
    urls = (RELEASE_URL.format(name=name), MIRROR_URL.format(name=name))
    return PackInfo(name, description, size, sha256, urls)


# Sizes and sha256 of InsightFace's v0.7 release zips, as pinned by several independent public
# projects (Nix fixed-output derivations, model installers, provenance logs); see the README.
CATALOG: dict[str, PackInfo] = {
    p.name: p
    for p in (
        _known(
            "buffalo_l",
            "Default. SCRFD-10GF detector + ResNet50 ArcFace (WebFace600K), 512-d; most accurate "
            "buffalo pack, slowest on CPU.",
            288_621_354,
            "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
        ),
        _known(
            "buffalo_m",
            "SCRFD-2.5GF detector + ResNet50 ArcFace (WebFace600K), 512-d; faster detection, "
            "same recogniser as buffalo_l.",
            275_951_529,
            "d98264bd8f2dc75cbc2ddce2a14e636e02bb857b3051c234b737bf3b614edca9",
        ),
        _known(
            "buffalo_s",
            "SCRFD-500MF detector + MobileFaceNet ArcFace (WebFace600K), 512-d, with landmark "
            "and age/gender models; fast on CPU.",
            127_607_557,
            "d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e",
        ),
        _known(
            "buffalo_sc",
            "SCRFD-500MF detector + MobileFaceNet ArcFace, 512-d, nothing else; the smallest "
            "download.",
            14_969_382,
            "57d31b56b6ffa911c8a73cfc1707c73cab76efe7f13b675a05223bf42de47c72",
        ),
        _known(
            "antelopev2",
            "SCRFD-10GF detector + ResNet100 ArcFace (Glint360K), 512-d; the largest and "
            "slowest recogniser.",
            360_662_982,
            "8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """One progress report. `total`/`eta_s` are None when unknown; `stage` says what runs now:
    "downloading", "verifying" (sha256), "extracting" (bytes = uncompressed bytes written),
    "checking" (loading each model) or "done"."""

    bytes_done: int
    total: int | None
    rate_bps: float
    eta_s: float | None
    stage: str = "downloading"

    @property
    def fraction(self) -> float | None:
        return self.bytes_done / self.total if self.total else None


ProgressFn = Callable[[DownloadProgress], None]
CancelFn = Callable[[], bool]


class PackNotFoundError(ModelPackError):
    """No such pack in the catalog or on disk."""


class PackExistsError(ModelPackError):
    """The pack is installed already (pass replace=True to reinstall)."""


class DownloadError(ModelPackError):
    """The pack could not be fetched (network, HTTP status); the message says what to do."""


class ChecksumError(ModelPackError):
    """The download or archive is not the file the catalog describes."""


class PackCancelledError(ModelPackError):
    """The operator cancelled; nothing was installed (a partial download may be kept)."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class InstalledPack:
    name: str
    path: Path
    files: tuple[str, ...]  # the .onnx files
    size: int  # bytes of all files in the folder
    manifest: dict[str, Any] | None  # None: installed outside FaceBatch

    @property
    def source(self) -> str | None:
        return None if self.manifest is None else self.manifest.get("source")


@dataclass(frozen=True, slots=True)
class PackEntry:
    """A row of the Models dialog: a catalog pack and/or an installed folder."""

    name: str
    info: PackInfo | None
    installed: InstalledPack | None
    partial_bytes: int  # bytes of a resumable partial download, 0 if none


@dataclass(slots=True)
class VerifyReport:
    name: str
    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    routed: dict[str, str] = field(default_factory=dict)  # task -> file name

    @property
    def ok(self) -> bool:
        return not self.problems


def offline_advice(name: str, url: str, root: Path) -> str:
    """What an operator without internet does instead: copy a pack from another machine."""
    return (
        f"To install it without internet: on a machine that has internet, download {url} (or "
        f"copy its pack folder, e.g. ~/.insightface/models/{name}), bring the zip or folder here "
        f"(USB stick, network share) and run `facebatch models import PATH` or use Import in the "
        f"Models dialog. It is installed into {root / name}."
    )


class _Rate:
    """Transfer rate over the last few seconds, so that the ETA follows the current speed."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> float:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


class _Reporter:
    """Throttles progress calls (at most every `interval_s`, plus every stage change)."""

    def __init__(self, progress: ProgressFn | None, interval_s: float = 0.1) -> None:
        self.progress = progress
        self.interval_s = interval_s
        self.last = 0.0
        self.stage = ""
        self.rate = _Rate()

    def __call__(
        self, stage: str, done: int, total: int | None, *, force: bool = False, moved: bool = True
    ) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if stage != self.stage:
            self.rate = _Rate()
            force = True
        rate = self.rate.add(now, done) if moved else 0.0
        if not force and now - self.last < self.interval_s:
            return
        self.last, self.stage = now, stage
        eta = (total - done) / rate if total is not None and rate > 0 else None
        self.progress(DownloadProgress(done, total, rate, eta, stage))


def _sha256(path: Path, cancelled: CancelFn | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            if cancelled is not None and cancelled():
                raise PackCancelledError("Cancelled while verifying")
            digest.update(chunk)
    return digest.hexdigest()


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """A pack name is one plain folder name: no separators, no leading dot."""
    if not _NAME.match(name) or name.endswith(".zip"):
        raise ModelPackError(
            f"Invalid pack name {name!r}: use letters, digits, '.', '_' or '-' "
            "(not starting with a dot, no slashes)"
        )
    return name


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def check_pack_dir(folder: Path) -> dict[str, str]:
    """Load every ONNX file through InsightFace's model_zoo, as the engine does; return
    {task: file name} for the detection and recognition models, or raise ModelPackError."""
    import onnxruntime
    from insightface.model_zoo import model_zoo

    from facebatch_gui.core.cvcompat import scrub_cv2_qt_env

    scrub_cv2_qt_env()
    onnxruntime.set_default_logger_severity(3)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise ModelPackError(f"{folder} holds no .onnx files")
    routed: dict[str, str] = {}
    for path in files:
        try:
            model = model_zoo.get_model(
                str(path), providers=["CPUExecutionProvider"], sess_options=options
            )
        except Exception as exc:  # a broken file must name itself
            raise ModelPackError(f"Cannot load model {path.name}: {exc}") from exc
        task = getattr(model, "taskname", None)
        if isinstance(task, str) and task not in routed:
            routed[task] = path.name
    missing = {"detection", "recognition"} - routed.keys()
    if missing:
        raise ModelPackError(
            f"{folder.name} lacks a {' and a '.join(sorted(missing))} model that InsightFace "
            "can route"
        )
    return routed


def available_model_dir(model_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The pack folder the engine would load without downloading anything, or None: the
    first-run dialog's question ("is there a pack?"), answered without touching the network."""
    from facebatch_gui.core.engine import resolve_model_dir

    try:
        return resolve_model_dir(model_dir, download=False)
    except ModelPackError:
        return None


class PackManager:
    """Installs packs into `root` (default `$INSIGHTFACE_HOME/models`), atomically."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        connect_timeout_s: float = 15.0,
        read_timeout_s: float = 30.0,
        retries: int = 3,
        check_models: bool = True,
    ) -> None:
        if root is None:
            from facebatch_gui.core.engine import insightface_root

            root = insightface_root() / "models"
        self.root = Path(root).expanduser()
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retries = retries
        self.check_models = check_models
        self.sweep()

    # --- paths and listing -------------------------------------------------------------------

    @property
    def downloads(self) -> Path:
        return self.root / ".downloads"

    def part_path(self, name: str) -> Path:
        return self.downloads / f"{check_name(name)}.zip.part"

    def pack_path(self, name: str) -> Path:
        return self.root / check_name(name)

    def sweep(self) -> list[Path]:
        """Delete staging/removal folders left by processes that died; return what went."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        pattern = re.compile(r"^\..+\.(staging|removing|old)-(\d+)-[0-9a-f]+$")
        for entry in self.root.iterdir():
            m = pattern.match(entry.name)
            if m and entry.is_dir() and not _pid_alive(int(m.group(2))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        return removed

    def installed(self, name: str) -> InstalledPack | None:
        path = self.pack_path(name)
        if not path.is_dir():
            return None
        onnx = tuple(sorted(p.name for p in path.glob("*.onnx")))
        if not onnx:
            return None
        manifest: dict[str, Any] | None = None
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        return InstalledPack(name, path, onnx, size, manifest)

    def list_installed(self) -> list[InstalledPack]:
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir() or not _NAME.match(entry.name):
                continue
            pack = self.installed(entry.name)
            if pack is not None:
                found.append(pack)
        return found

    def entries(self) -> list[PackEntry]:
        """Catalog packs first (installed or not), then other installed folders."""
        installed = {p.name: p for p in self.list_installed()}
        rows = []
        for name, info in CATALOG.items():
            rows.append(PackEntry(name, info, installed.pop(name, None), self.partial_bytes(name)))
        rows.extend(PackEntry(n, None, p, self.partial_bytes(n)) for n, p in installed.items())
        return rows

    def partial_bytes(self, name: str) -> int:
        try:
            return self.part_path(name).stat().st_size
        except OSError:
            return 0

    def discard_partial(self, name: str) -> None:
        for path in (self.part_path(name), self._part_meta(name)):
            path.unlink(missing_ok=True)

    def _part_meta(self, name: str) -> Path:
        return self.downloads / f"{check_name(name)}.zip.part.json"

    # --- download ------------------------------------------------------------------------------

    def download(
        self,
        name: str,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelFn | None = None,
        url: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
        replace: bool = False,
    ) -> Path:
        """Fetch NAME's zip (resuming a partial one), verify it, install it; return its folder.

        With `url`, that address is used instead of the catalog's, and the catalog's size and
        sha256 are not applied (it may be another file): pass `sha256`/`size` to check it.
        """
        check_name(name)
        info = CATALOG.get(name)
        if url is not None:
            urls: tuple[str, ...] = (url,)
        elif info is not None:
            urls, sha256, size = info.urls, sha256 or info.sha256, size or info.size
        else:
            raise PackNotFoundError(
                f"Unknown model pack {name!r}; known packs: {', '.join(CATALOG)}. "
                "Import a pack you have with `facebatch models import PATH`."
            )
        if self.installed(name) is not None and not replace:
            raise PackExistsError(f"Model pack {name} is installed already in {self.root / name}")
        cancelled = cancelled or (lambda: False)
        report = _Reporter(progress)
        self.downloads.mkdir(parents=True, exist_ok=True)
        part = self.part_path(name)
        with _locked(self.downloads / f"{name}.lock", name):
            errors: list[str] = []
            for candidate in urls:
                try:
                    self._fetch(name, candidate, part, size, report, cancelled)
                    break
                except _TryNextUrlError as exc:
                    errors.append(str(exc))
            else:
                raise DownloadError(
                    f"Cannot download model pack {name}: {'; '.join(errors)}. This machine may "
                    f"be offline or the address blocked. {offline_advice(name, urls[0], self.root)}"
                    + self._kept_note(name)
                )
            got_size = part.stat().st_size
            if size is not None and got_size != size:
                self.discard_partial(name)
                raise ChecksumError(
                    f"Download of {name} is {got_size} bytes, expected {size}; discarded it"
                )
            report("verifying", 0, got_size, force=True, moved=False)
            digest = _sha256(part, cancelled)
            if sha256 is not None and digest != sha256.lower():
                self.discard_partial(name)
                raise ChecksumError(
                    f"Download of {name} does not match its checksum (sha256 {digest}, expected "
                    f"{sha256}); it was discarded and nothing was installed. Try again; if it "
                    "keeps failing, the download is being altered on the way (proxy, captive "
                    "portal): import a copy of the pack instead."
                )
            report("verifying", got_size, got_size, force=True)
            path = self._install_zip(
                part,
                name,
                source=urls[0] if url is None else url,
                archive_sha256=digest,
                catalog_verified=sha256 is not None and info is not None and url is None,
                report=report,
                cancelled=cancelled,
                replace=replace,
            )
            self.discard_partial(name)
        return path

    def _kept_note(self, name: str) -> str:
        kept = self.partial_bytes(name)
        if not kept:
            return ""
        return f" The {kept} bytes fetched so far are kept and the next download resumes there."

    def _fetch(
        self,
        name: str,
        url: str,
        part: Path,
        size: int | None,
        report: _Reporter,
        cancelled: CancelFn,
    ) -> None:
        """Stream `url` into `part`, resuming with Range (+If-Range) and retrying drops."""
        timeout = httpx.Timeout(
            self.read_timeout_s, connect=self.connect_timeout_s, pool=self.connect_timeout_s
        )
        meta_path = self._part_meta(name)
        headers = {"User-Agent": f"FaceBatch/{__version__}", "Accept-Encoding": "identity"}
        last_error = ""
        with httpx.Client(timeout=timeout, follow_redirects=True, headers=headers) as client:
            for attempt in range(self.retries + 1):
                if cancelled():
                    raise PackCancelledError(
                        f"Download of {name} cancelled" + self._kept_note(name)
                    )
                meta = _read_json(meta_path)
                if meta.get("url") != url:
                    part.unlink(missing_ok=True)  # a part from another address is not resumable
                    meta = {"url": url}
                offset = part.stat().st_size if part.exists() else 0
                if size is not None and offset > size:
                    part.unlink()
                    offset = 0
                if size is not None and offset == size:
                    return  # complete already; the checksum decides
                request_headers = {}
                if offset:
                    request_headers["Range"] = f"bytes={offset}-"
                    validator = meta.get("etag") or meta.get("last_modified")
                    if validator:
                        request_headers["If-Range"] = validator
                try:
                    with client.stream("GET", url, headers=request_headers) as response:
                        if response.status_code == 416 and offset:
                            part.unlink(missing_ok=True)  # server says: not a valid range
                            continue
                        if response.status_code in (404, 410):
                            raise _TryNextUrlError(f"{url} answered HTTP {response.status_code}")
                        if response.status_code not in (200, 206):
                            last_error = f"{url} answered HTTP {response.status_code}"
                            if response.status_code >= 500 or response.status_code == 429:
                                self._pause(attempt, cancelled)
                                continue
                            raise _TryNextUrlError(last_error)
                        start, total = _range_of(response, offset)
                        meta.update(
                            etag=response.headers.get("ETag"),
                            last_modified=response.headers.get("Last-Modified"),
                        )
                        meta_path.write_text(json.dumps(meta), encoding="utf-8")
                        if size is not None and total is not None and total != size:
                            raise ChecksumError(
                                f"{url} offers {total} bytes but pack {name} is {size} bytes: "
                                "not the expected file; nothing was installed"
                            )
                        total = total if total is not None else size
                        self._stream(response, part, start, total, report, cancelled)
                    return
                except (httpx.TransportError, httpx.DecodingError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    if attempt < self.retries:
                        self._pause(attempt, cancelled)
        raise _TryNextUrlError(f"{url}: {last_error}")

    @staticmethod
    def _pause(attempt: int, cancelled: CancelFn) -> None:
        deadline = time.monotonic() + min(0.5 * 2**attempt, 8.0)
        while time.monotonic() < deadline and not cancelled():
            time.sleep(0.05)

    def _stream(
        self,
        response: httpx.Response,
        part: Path,
        start: int,
        total: int | None,
        report: _Reporter,
        cancelled: CancelFn,
    ) -> None:
        mode = "r+b" if start and part.exists() else "wb"
        with part.open(mode) as fh:
            fh.seek(start)
            fh.truncate()
            done = start
            report("downloading", done, total, force=True, moved=False)
            for chunk in response.iter_raw():  # as it arrives: a drop loses nothing
                if cancelled():
                    fh.flush()
                    raise PackCancelledError(
                        f"Download cancelled at {done} of {total or '?'} bytes; the part is "
                        "kept and the next download resumes there"
                    )
                fh.write(chunk)
                done += len(chunk)
                report("downloading", done, total)
            fh.flush()
            os.fsync(fh.fileno())
        if total is not None and done < total:
            raise httpx.RemoteProtocolError(f"connection closed at {done} of {total} bytes")
        report("downloading", done, total, force=True)

    # --- install -------------------------------------------------------------------------------

    def import_pack(
        self,
        source: str | os.PathLike[str],
        name: str | None = None,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelFn | None = None,
        replace: bool = False,
    ) -> Path:
        """Install a pack from a zip (with or without a top folder) or a folder of .onnx files.

        A zip whose sha256 is the catalog's for that name is recorded as verified."""
        src = Path(source).expanduser()
        if not src.exists():
            raise PackNotFoundError(f"{src} does not exist")
        name = check_name(name or (src.stem if src.is_file() else src.name))
        if self.installed(name) is not None and not replace:
            raise PackExistsError(f"Model pack {name} is installed already in {self.root / name}")
        cancelled = cancelled or (lambda: False)
        report = _Reporter(progress)
        self.root.mkdir(parents=True, exist_ok=True)
        if src.is_file():
            if not zipfile.is_zipfile(src):
                raise ModelPackError(f"{src} is not a zip file or a folder of .onnx files")
            report("verifying", 0, src.stat().st_size, force=True, moved=False)
            digest = _sha256(src, cancelled)
            info = CATALOG.get(name)
            return self._install_zip(
                src,
                name,
                source=str(src.resolve()),
                archive_sha256=digest,
                catalog_verified=info is not None and info.sha256 == digest,
                report=report,
                cancelled=cancelled,
                replace=replace,
            )
        if src.resolve() == self.pack_path(name).resolve():
            raise PackExistsError(f"{src} is the installed pack {name} itself")
        files = [p for p in sorted(src.iterdir()) if p.is_file() and p.name != MANIFEST]
        if not any(p.suffix == ".onnx" for p in files):
            raise ModelPackError(f"{src} holds no .onnx files: not an InsightFace pack folder")
        with self._staging(name) as staging:
            total = sum(p.stat().st_size for p in files)
            done = 0
            for path in files:
                with path.open("rb") as fin, (staging / path.name).open("wb") as fout:
                    done = _copy(fin, fout, done, total, report, cancelled)
            report("extracting", done, total, force=True)
            self._finish(staging, name, str(src.resolve()), None, False, report, replace)
        return self.pack_path(name)

    def _install_zip(
        self,
        archive: Path,
        name: str,
        *,
        source: str,
        archive_sha256: str,
        catalog_verified: bool,
        report: _Reporter,
        cancelled: CancelFn,
        replace: bool,
    ) -> Path:
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as exc:
            raise ModelPackError(f"{archive.name} is not a valid zip file: {exc}") from exc
        with zf, self._staging(name) as staging:
            members = _pack_members(zf, archive.name)
            total = sum(m.file_size for m, _ in members)
            free = shutil.disk_usage(staging).free
            if free < total + (16 << 20):
                raise ModelPackError(
                    f"Not enough disk space in {self.root} to install {name}: it needs "
                    f"{total / 1e6:,.0f} MB, {free / 1e6:,.0f} MB are free"
                )
            done = 0
            report("extracting", 0, total, force=True, moved=False)
            for member, target in members:
                if cancelled():
                    raise PackCancelledError(f"Install of {name} cancelled; nothing was installed")
                try:
                    with zf.open(member) as fin, (staging / target).open("xb") as fout:
                        done = _copy(fin, fout, done, total, report, cancelled)
                except (zipfile.BadZipFile, EOFError, OSError) as exc:
                    raise ModelPackError(
                        f"{archive.name} is damaged ({member.filename}: {exc}); nothing was "
                        "installed"
                    ) from exc
            report("extracting", done, total, force=True)
            self._finish(staging, name, source, archive_sha256, catalog_verified, report, replace)
        return self.pack_path(name)

    @contextlib.contextmanager
    def _staging(self, name: str) -> Iterator[Path]:
        """A fresh folder next to the pack's; deleted unless `_finish` renamed it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{name}.staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            yield staging
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _finish(
        self,
        staging: Path,
        name: str,
        source: str,
        archive_sha256: str | None,
        catalog_verified: bool,
        report: _Reporter,
        replace: bool,
    ) -> None:
        """Check the models load, write the manifest, then rename the folder into place."""
        if self.check_models:
            report("checking", 0, None, force=True, moved=False)
            check_pack_dir(staging)
        files = sorted(p for p in staging.iterdir() if p.is_file())
        manifest = {
            "name": name,
            "source": source,
            "archive_sha256": archive_sha256,
            "catalog_verified": catalog_verified,
            "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "facebatch": __version__,
            "files": {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        dest = self.pack_path(name)
        old: Path | None = None
        if dest.exists():
            if not replace:
                raise PackExistsError(f"Model pack {name} appeared in {dest} meanwhile")
            old = self.root / f".{name}.old-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            dest.rename(old)
        try:
            staging.rename(dest)
        except OSError as exc:
            if old is not None and not dest.exists():
                old.rename(dest)
            raise ModelPackError(f"Cannot move the new pack into {dest}: {exc}") from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        report("done", 1, 1, force=True)

    # --- verify and remove ---------------------------------------------------------------------

    def verify(self, name: str, *, check_models: bool | None = None) -> VerifyReport:
        """Re-hash the files against the manifest written at install, and load the models."""
        pack = self.installed(name)
        if pack is None:
            raise PackNotFoundError(f"Model pack {name} is not installed in {self.root}")
        report = VerifyReport(name, pack.path)
        present = {p.name: p for p in pack.path.iterdir() if p.is_file() and p.name != MANIFEST}
        for fname, path in sorted(present.items()):
            report.files.append(FileInfo(fname, path.stat().st_size, _sha256(path)))
        hashes = {f.name: f for f in report.files}
        if pack.manifest is None:
            report.notes.append(
                "no FaceBatch manifest (installed by hand or by InsightFace): file hashes cannot "
                "be compared with what was installed"
            )
        else:
            expected = pack.manifest.get("files", {})
            for fname, want in sorted(expected.items()):
                got = hashes.get(fname)
                if got is None:
                    report.problems.append(f"{fname} is missing")
                elif got.sha256 != want.get("sha256"):
                    report.problems.append(
                        f"{fname} changed since install (sha256 {got.sha256[:12]}…, installed "
                        f"{str(want.get('sha256'))[:12]}…, {got.size} vs {want.get('size')} bytes)"
                    )
            for fname in sorted(set(hashes) - set(expected)):
                if fname.endswith(".onnx"):
                    report.problems.append(f"{fname} was added after install")
            info = CATALOG.get(name)
            if pack.manifest.get("catalog_verified"):
                report.notes.append("installed from the official zip (sha256 matched the catalog)")
            elif info is not None and info.sha256 is not None:
                report.notes.append(
                    "installed from a zip or folder that is not byte-identical to the catalog's "
                    "release zip; only the install-time hashes are checked"
                )
        if check_models if check_models is not None else self.check_models:
            try:
                report.routed = check_pack_dir(pack.path)
            except ModelPackError as exc:
                report.problems.append(str(exc))
        return report

    def remove(self, name: str, *, partial: bool = True) -> None:
        """Rename the pack away (it disappears at once), then delete it; and its partial."""
        dest = self.pack_path(name)
        if not dest.is_dir():
            if partial and self.partial_bytes(name):
                self.discard_partial(name)
                return
            raise PackNotFoundError(f"Model pack {name} is not installed in {self.root}")
        trash = self.root / f".{name}.removing-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        dest.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        if partial:
            self.discard_partial(name)


class _TryNextUrlError(Exception):
    """This address failed; try the next one (internal)."""


@contextlib.contextmanager
def _locked(path: Path, name: str) -> Iterator[None]:
    """One download of a pack at a time across processes (advisory lock where supported)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; the staging rename still protects
        yield
        return
    with path.open("a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ModelPackError(
                f"Model pack {name} is being downloaded by another process"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _range_of(response: httpx.Response, offset: int) -> tuple[int, int | None]:
    """(where this body starts in the file, full size or None) for a 200 or 206 response."""
    length = response.headers.get("Content-Length")
    if response.status_code == 206:
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            raise httpx.RemoteProtocolError("the server resumed at the wrong offset")
        return offset, None if m.group(3) == "*" else int(m.group(3))
    return 0, int(length) if length and length.isdigit() else None


def _copy(
    fin: Any, fout: Any, done: int, total: int, report: _Reporter, cancelled: CancelFn
) -> int:
    for chunk in iter(lambda: fin.read(1 << 20), b""):
        if cancelled():
            raise PackCancelledError("Install cancelled; nothing was installed")
        fout.write(chunk)
        done += len(chunk)
        report("extracting", done, total)
    return done


def _pack_members(zf: zipfile.ZipFile, label: str) -> list[tuple[zipfile.ZipInfo, str]]:
    """The members to extract and their flat names: the folder that holds the .onnx files (the
    zip's root, or one top folder as in antelopev2.zip) is the pack. Unsafe entries are refused."""
    files = []
    for info in zf.infolist():
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if info.is_dir() or path.parts[0] == "__MACOSX" or path.name.startswith("._"):
            continue
        if path.is_absolute() or ".." in path.parts:
            raise ModelPackError(f"{label} has an unsafe entry {info.filename!r}; not installed")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelPackError(f"{label} has a symbolic link {info.filename!r}; not installed")
        files.append((info, path))
    homes = {p.parent for _, p in files if p.suffix.lower() == ".onnx"}
    if not homes:
        raise ModelPackError(f"{label} holds no .onnx files: not an InsightFace model pack")
    if len(homes) > 1:
        raise ModelPackError(
            f"{label} has .onnx files in several folders ({', '.join(sorted(map(str, homes)))}); "
            "a pack is one folder of models"
        )
    home = homes.pop()
    chosen = [(i, p.name) for i, p in files if p.parent == home and p.name != MANIFEST]
    names = [n for _, n in chosen]
    if len(set(names)) != len(names):
        raise ModelPackError(f"{label} has duplicate file names")
    return chosen
