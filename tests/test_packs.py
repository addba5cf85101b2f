"""Model packs: real downloads from a loopback HTTP server, real zips of ../shared/models, real
model loading. Nothing is mocked."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from facebatch_gui.core.errors import ModelPackError
from facebatch_gui.core.packs import (
    CATALOG,
    MANIFEST,
    ChecksumError,
    DownloadError,
    DownloadProgress,
    PackCancelledError,
    PackExistsError,
    PackManager,
    PackNotFoundError,
)
from tests.support.packserver import PackServer


def make_zip(model_dir: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if prefix:
            zf.writestr(prefix, b"")  # an explicit folder entry, as real zips have
        for path in sorted(model_dir.glob("*.onnx")):
            zf.write(path, prefix + path.name)
        zf.writestr(prefix + "README.md", b"test pack\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def zips(model_dir: Path) -> dict[str, bytes]:
    return {
        "flat.zip": make_zip(model_dir),
        "nested.zip": make_zip(model_dir, "antelope_like/"),
        "noonnx.zip": make_zip(model_dir.parent / "does-not-exist"),
        "evil.zip": make_zip(model_dir, extra={"../evil.onnx": b"x"}),
    }


@pytest.fixture
def server(zips: dict[str, bytes]) -> Iterator[PackServer]:
    with PackServer(zips) as srv:
        yield srv


@pytest.fixture
def manager(tmp_path: Path) -> PackManager:
    return PackManager(tmp_path / "models", retries=2)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def onnx_names(model_dir: Path) -> set[str]:
    return {p.name for p in model_dir.glob("*.onnx")}


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if ".staging-" in p.name or ".old-" in p.name]


def test_catalog_pins_the_official_release_zips() -> None:
    assert {"buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc", "antelopev2"} <= set(CATALOG)
    for info in CATALOG.values():
        assert info.url == (
            f"https://github.com/deepinsight/insightface/releases/download/v0.7/{info.name}.zip"
        )
        assert info.size is not None and info.size > 10_000_000
        assert info.sha256 is not None and len(bytes.fromhex(info.sha256)) == 32
        assert "non-commercial" in info.licence


def test_download_reports_progress_verifies_and_installs(
    manager: PackManager, server: PackServer, zips: dict[str, bytes], model_dir: Path
) -> None:
    data = zips["flat.zip"]
    server.delay_s = 0.003  # ~100 chunks of 64 KiB: several throttled progress events
    events: list[DownloadProgress] = []
    path = manager.download(
        "mypack", url=server.url("packs/flat.zip"), sha256=sha(data), progress=events.append
    )
    assert path == manager.root / "mypack"
    assert {p.name for p in path.glob("*.onnx")} == onnx_names(model_dir)
    down = [e for e in events if e.stage == "downloading"]
    assert len(down) >= 3
    assert all(e.total == len(data) for e in down)
    assert [e.bytes_done for e in down] == sorted(e.bytes_done for e in down)
    assert down[-1].bytes_done == len(data)
    assert any(e.rate_bps > 0 and e.eta_s is not None for e in down)
    extracting = [e for e in events if e.stage == "extracting"]
    assert extracting[-1].bytes_done == extracting[-1].total  # bars end full
    stages = [e.stage for e in events]
    assert stages.index("downloading") < stages.index("verifying") < stages.index("extracting")
    assert stages.index("extracting") < stages.index("checking") < stages.index("done")
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["archive_sha256"] == sha(data)
    assert manifest["catalog_verified"] is False  # a --url download is not the catalog's file
    assert manager.partial_bytes("mypack") == 0
    assert leftovers(manager.root) == []
    report = manager.verify("mypack")
    assert report.ok, report.problems
    assert set(report.routed) >= {"detection", "recognition"}
    with pytest.raises(PackExistsError):
        manager.download("mypack", url=server.url("packs/flat.zip"))


def test_resume_after_dropped_connection_uses_range(
    manager: PackManager, server: PackServer, zips: dict[str, bytes]
) -> None:
    data = zips["flat.zip"]
    server.drop_once_at = len(data) // 2
    manager.download("mypack", url=server.url("packs/flat.zip"), sha256=sha(data))
    assert server.statuses == [200, 206]
    (_, first), (_, second) = server.requests
    assert "Range" not in first
    assert second["Range"] == f"bytes={len(data) // 2}-"
    assert second["If-Range"].startswith('"')  # the ETag of the first response
    assert manager.verify("mypack").ok


def test_server_without_range_support_restarts_from_zero(
    manager: PackManager, server: PackServer, zips: dict[str, bytes]
) -> None:
    data = zips["flat.zip"]
    server.drop_once_at = len(data) // 3
    manager.download("mypack", url=server.url("norange/flat.zip"), sha256=sha(data))
    assert server.statuses == [200, 200]
    assert manager.installed("mypack") is not None


def test_cancel_keeps_the_part_and_the_next_download_resumes(
    manager: PackManager, server: PackServer, zips: dict[str, bytes]
) -> None:
    data = zips["flat.zip"]
    server.delay_s = 0.005
    seen: list[DownloadProgress] = []

    def cancel_after_1mb() -> bool:
        return bool(seen) and seen[-1].bytes_done > 1_000_000

    with pytest.raises(PackCancelledError, match="resumes"):
        manager.download(
            "mypack",
            url=server.url("packs/flat.zip"),
            sha256=sha(data),
            progress=seen.append,
            cancelled=cancel_after_1mb,
        )
    kept = manager.partial_bytes("mypack")
    assert 1_000_000 < kept < len(data)
    assert not (manager.root / "mypack").exists()
    assert leftovers(manager.root) == []
    server.delay_s = 0.0
    manager.download("mypack", url=server.url("packs/flat.zip"), sha256=sha(data))
    assert server.requests[-1][1]["Range"] == f"bytes={kept}-"
    assert server.statuses[-1] == 206
    assert manager.verify("mypack").ok


def test_checksum_mismatch_is_rejected_and_nothing_installed(
    manager: PackManager, server: PackServer, zips: dict[str, bytes]
) -> None:
    with pytest.raises(ChecksumError, match="nothing was installed"):
        manager.download("mypack", url=server.url("packs/flat.zip"), sha256="0" * 64)
    assert not (manager.root / "mypack").exists()
    assert manager.partial_bytes("mypack") == 0  # a wrong file is not worth resuming
    assert leftovers(manager.root) == []
    with pytest.raises(ChecksumError, match="not the expected file"):
        manager.download("mypack", url=server.url("packs/flat.zip"), size=123)
    assert not (manager.root / "mypack").exists()


def test_cancel_while_extracting_leaves_no_pack(
    manager: PackManager, server: PackServer, zips: dict[str, bytes]
) -> None:
    seen: list[DownloadProgress] = []
    staged: list[str] = []

    def cancel_mid_extract() -> bool:
        """Cancel once the staging folder holds a first extracted file."""
        for folder in manager.root.glob(".mypack.staging-*"):
            staged.extend(p.name for p in folder.iterdir())
        return bool(staged)

    with pytest.raises(PackCancelledError, match="nothing was installed"):
        manager.download(
            "mypack",
            url=server.url("packs/flat.zip"),
            progress=seen.append,
            cancelled=cancel_mid_extract,
        )
    assert any(e.stage == "extracting" for e in seen)
    assert staged  # it was cancelled with files half-way extracted
    assert not (manager.root / "mypack").exists()
    assert leftovers(manager.root) == []


def test_a_concurrent_reader_never_sees_a_partial_pack(
    manager: PackManager, server: PackServer, zips: dict[str, bytes], model_dir: Path
) -> None:
    """Install, then reinstall (replace), while another thread keeps listing the pack folder."""
    expected = {p.name: p.stat().st_size for p in model_dir.glob("*.onnx")}
    target = manager.root / "mypack"
    partial: list[dict[str, int]] = []
    states: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                before = target.stat().st_ino
                seen = {p.name: p.stat().st_size for p in target.iterdir()}
                after = target.stat().st_ino
            except FileNotFoundError:
                states.add("absent")
                continue
            if before != after:
                continue  # swapped while listing: the listing mixes two folders, neither partial
            onnx = {k: v for k, v in seen.items() if k.endswith(".onnx")}
            if onnx != expected or MANIFEST not in seen:
                partial.append(seen)
            states.add("complete")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        server.delay_s = 0.002
        manager.download("mypack", url=server.url("packs/flat.zip"))
        manager.download("mypack", url=server.url("packs/nested.zip"), replace=True)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert partial == []
    assert states == {"absent", "complete"}
    assert leftovers(manager.root) == []


def test_import_from_zips_and_folders(
    manager: PackManager, tmp_path: Path, zips: dict[str, bytes], model_dir: Path
) -> None:
    for name in zips:
        (tmp_path / name).write_bytes(zips[name])
    path = manager.import_pack(tmp_path / "nested.zip")  # top folder stripped, name = zip stem
    assert path == manager.root / "nested"
    assert {p.name for p in path.glob("*.onnx")} == onnx_names(model_dir)
    assert (path / "README.md").is_file()
    path = manager.import_pack(model_dir, name="shared")
    assert {p.name for p in path.glob("*.onnx")} == onnx_names(model_dir)
    assert json.loads((path / MANIFEST).read_text())["source"] == str(model_dir.resolve())
    assert [p.name for p in manager.list_installed()] == ["nested", "shared"]
    with pytest.raises(PackExistsError):
        manager.import_pack(model_dir, name="shared")
    with pytest.raises(ModelPackError, match=r"no \.onnx"):
        manager.import_pack(tmp_path / "noonnx.zip")
    with pytest.raises(ModelPackError, match="unsafe"):
        manager.import_pack(tmp_path / "evil.zip")
    (tmp_path / "not-a-zip.zip").write_bytes(b"hello")
    with pytest.raises(ModelPackError, match="not a zip"):
        manager.import_pack(tmp_path / "not-a-zip.zip")
    with pytest.raises(ModelPackError, match="Invalid pack name"):
        manager.import_pack(model_dir, name="../escape")
    assert not (tmp_path / "escape").exists()
    assert leftovers(manager.root) == []


def test_import_refuses_a_folder_whose_models_do_not_load(
    manager: PackManager, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "det.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelPackError, match=r"Cannot load model det\.onnx"):
        manager.import_pack(bad)
    assert manager.list_installed() == []
    assert leftovers(manager.root) == []


def test_verify_detects_tampering(manager: PackManager, model_dir: Path) -> None:
    path = manager.import_pack(model_dir, name="shared")
    assert manager.verify("shared").ok
    victim = sorted(path.glob("*.onnx"))[0]
    with victim.open("ab") as fh:
        fh.write(b"\0")
    report = manager.verify("shared", check_models=False)
    assert not report.ok
    assert any(victim.name in p and "changed" in p for p in report.problems)
    victim.unlink()
    report = manager.verify("shared", check_models=False)
    assert any(victim.name in p and "missing" in p for p in report.problems)


def test_verify_of_a_pack_installed_by_hand_notes_the_missing_manifest(
    manager: PackManager, model_dir: Path
) -> None:
    target = manager.root / "byhand"
    target.mkdir(parents=True)
    for p in model_dir.glob("*.onnx"):
        (target / p.name).write_bytes(p.read_bytes())
    report = manager.verify("byhand")
    assert report.ok
    assert any("no FaceBatch manifest" in n for n in report.notes)


def test_remove(manager: PackManager, model_dir: Path) -> None:
    manager.import_pack(model_dir, name="shared")
    manager.remove("shared")
    assert not (manager.root / "shared").exists()
    assert manager.list_installed() == []
    with pytest.raises(PackNotFoundError):
        manager.remove("shared")


def test_unreachable_server_says_how_to_import_instead(manager: PackManager) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager.retries = 0
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        manager.download("buffalo_l", url=f"http://127.0.0.1:{port}/buffalo_l.zip")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "offline" in message
    assert "facebatch models import" in message
    assert not (manager.root / "buffalo_l").exists()


def test_http_404_is_reported(manager: PackManager, server: PackServer) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        manager.download("mypack", url=server.url("missing/flat.zip"))


def test_unknown_pack_name_is_refused(manager: PackManager) -> None:
    with pytest.raises(PackNotFoundError, match="buffalo_l"):
        manager.download("no_such_pack")


def test_stale_staging_of_a_dead_process_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "models"
    dead = root / ".mypack.staging-999999999-abcdef"
    mine = root / f".mypack.staging-{os.getpid()}-abcdef"
    dead.mkdir(parents=True)
    mine.mkdir()
    PackManager(root)
    assert not dead.exists()
    assert mine.exists()  # a live process (this one) may still be installing
