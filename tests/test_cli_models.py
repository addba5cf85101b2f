"""`facebatch models ...`, `--version` and `self-check`, run as real subprocesses.

INSIGHTFACE_HOME points at a temporary folder, so the packs land there (as they would in
~/.insightface/models)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from facebatch_gui import __version__
from tests.support.packserver import PackServer
from tests.test_packs import make_zip


def run(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "INSIGHTFACE_HOME": str(home)}
    env.pop("FACEBATCH_MODEL_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "facebatch_gui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def zipped(model_dir: Path) -> bytes:
    return make_zip(model_dir)


@pytest.fixture
def server(zipped: bytes) -> Iterator[PackServer]:
    with PackServer({"p.zip": zipped}) as srv:
        yield srv


def test_version(tmp_path: Path) -> None:
    out = run(tmp_path, "--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"facebatch {__version__}"


def test_list_shows_the_catalog_and_the_licence(tmp_path: Path) -> None:
    out = run(tmp_path, "models", "list")
    assert out.returncode == 0, out.stderr
    for name in ("buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc", "antelopev2"):
        assert name in out.stdout
    assert "288.6 MB" in out.stdout  # buffalo_l's zip
    assert "non-commercial research purposes only" in out.stdout
    listed = json.loads(run(tmp_path, "models", "list", "--json").stdout)
    assert listed["root"] == str(tmp_path / "models")
    assert not any(p["installed"] for p in listed["packs"])


def test_download_with_progress_then_verify_and_remove(
    tmp_path: Path, server: PackServer, zipped: bytes
) -> None:
    digest = hashlib.sha256(zipped).hexdigest()
    url = server.url("packs/p.zip")
    out = run(tmp_path, "models", "download", "mine", "--url", url, "--sha256", digest)
    assert out.returncode == 0, out.stderr
    assert "downloading" in out.stderr and "100%" in out.stderr  # the tqdm bar on stderr
    assert (tmp_path / "models" / "mine").is_dir()
    listed = json.loads(run(tmp_path, "models", "list", "--json").stdout)
    assert [p["name"] for p in listed["packs"] if p["installed"]] == ["mine"]

    out = run(tmp_path, "models", "verify", "mine")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mine: OK" in out.stdout and "detection:" in out.stdout

    victim = sorted((tmp_path / "models" / "mine").glob("*.onnx"))[0]
    victim.write_bytes(victim.read_bytes()[:-1])
    out = run(tmp_path, "models", "verify", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report[0]["ok"] is False
    assert any(victim.name in p for p in report[0]["problems"])

    out = run(tmp_path, "models", "remove", "mine")
    assert out.returncode == 2 and "--yes" in out.stderr  # no silent deletes from scripts
    assert (tmp_path / "models" / "mine").is_dir()
    out = run(tmp_path, "models", "remove", "mine", "--yes")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "models" / "mine").exists()


def test_checksum_mismatch_exits_2_and_installs_nothing(tmp_path: Path, server: PackServer) -> None:
    out = run(tmp_path, "models", "download", "mine", "--url", server.url("packs/p.zip"),
              "--sha256", "f" * 64, "--quiet")  # fmt: skip
    assert out.returncode == 2
    assert "does not match its checksum" in out.stderr
    assert not (tmp_path / "models" / "mine").exists()


def test_offline_download_explains_the_import_path(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run(tmp_path, "models", "download", "buffalo_sc", "--url",
              f"http://127.0.0.1:{port}/buffalo_sc.zip", "--quiet")  # fmt: skip
    assert out.returncode == 2
    assert "offline" in out.stderr
    assert "facebatch models import" in out.stderr


def test_import_zip_and_folder(tmp_path: Path, zipped: bytes, model_dir: Path) -> None:
    archive = tmp_path / "buffalo_like.zip"
    archive.write_bytes(zipped)
    home = tmp_path / "home"
    out = run(home, "models", "import", str(archive))
    assert out.returncode == 0, out.stderr
    assert (home / "models" / "buffalo_like").is_dir()
    out = run(home, "models", "import", str(model_dir), "--name", "copy", "--quiet")
    assert out.returncode == 0, out.stderr
    out = run(home, "models", "import", str(model_dir), "--name", "copy", "--quiet")
    assert out.returncode == 2 and "installed already" in out.stderr


def test_self_check_with_a_photo(tmp_path: Path, model_dir: Path, faces_dir: Path) -> None:
    photo = faces_dir / "identities" / "biden" / "1.jpg"
    out = run(tmp_path, "self-check", "--model-dir", str(model_dir), "--image", str(photo),
              "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] is True
    assert result["faces"] == 1
    assert result["best_score"] > 0.5
    assert result["embedding_dim"] == 128
    assert result["embedding_norm"] > 0
    assert result["versions"]["onnxruntime"]


def test_top_level_self_check_flag_uses_the_builtin_image(tmp_path: Path, model_dir: Path) -> None:
    out = run(tmp_path, "--self-check", "--model-dir", str(model_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "built-in" in out.stdout
    assert "self-check passed" in out.stdout
    assert "face(s)" in out.stdout


def test_self_check_fails_without_a_face(tmp_path: Path, model_dir: Path) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    out = run(tmp_path, "self-check", "--model-dir", str(model_dir), "--image", str(blank))
    assert out.returncode == 1
    assert "no face found" in out.stdout


def test_self_check_without_a_pack_is_a_setup_error(tmp_path: Path) -> None:
    out = run(tmp_path, "self-check")
    assert out.returncode == 2
    assert "No face model pack found" in out.stderr
