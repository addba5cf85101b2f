"""Shared fixtures: the offline model pack, real photos served on 127.0.0.1, fresh stores.

`../shared` (or FACEBATCH_SHARED) holds the models and photos. Where they are absent, the tests that
need them skip and say why; the rest still run.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.imageserver import ImageServer

pytest_plugins = ["tests.support.pgfixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEBATCH_SHARED", REPO.parent / "shared"))
MODELS = Path(os.environ.get("FACEBATCH_MODEL_DIR", SHARED / "models"))
FACES = SHARED / "faces"


def _has_models() -> bool:
    return MODELS.is_dir() and any(MODELS.glob("*.onnx"))


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not (FACES / "manifest.csv").is_file():
        pytest.skip(f"test photos not found at {FACES} (set FACEBATCH_SHARED)")
    return FACES


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not _has_models():
        pytest.skip(f"offline model pack not found at {MODELS} (set FACEBATCH_MODEL_DIR)")
    return MODELS


@pytest.fixture(scope="session")
def engine(model_dir: Path):
    from facebatch_gui.core.engine import FaceEngine

    return FaceEngine(model_dir)


@pytest.fixture(scope="session")
def image_server(faces_dir: Path) -> Iterator[ImageServer]:
    with ImageServer(faces_dir) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path):
    from facebatch_gui.core.store import SqliteStore

    s = SqliteStore(tmp_path / "faces.db")
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_thread_pool_work_left() -> Iterator[None]:
    """Fail any test that leaves batch workers running, as napari's tests do for its pools."""
    yield
    try:
        from facebatch_gui.qt.runner import BatchRunner
    except ImportError:
        return
    busy = [r for r in list(BatchRunner.instances) if r.active_threads() > 0]
    for runner in busy:
        runner.cancel()
        runner.wait(10_000)  # do not let a stray worker outlive its objects
    assert not busy, f"test left batch work running: {[r.task_id for r in busy]}"
