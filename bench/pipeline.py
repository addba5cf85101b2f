"""Throughput of registration: the seed's sequential loop, the product pipeline, the model alone.

Run from the repository root:

    .venv/bin/python bench/pipeline.py --users 200 --latency-ms 150
    .venv/bin/python bench/pipeline.py --rss-scaling --latency-ms 20
    .venv/bin/python bench/pipeline.py --only pipeline --users 200 --trace

The shared photos (`../shared/faces`, or FACEBATCH_SHARED) are served on 127.0.0.1 by the tests'
ImageServer, which sleeps `--latency-ms` before every /faces/ response. N users cycle over the
single-face photos, each with its own URL (`?u=<i>`), so every user is one real HTTP request.

  (a) seed      one thread: httpx download, decode, detect + align + embed, commit per user
  (b) pipeline  TaskManager.start_register under a QCoreApplication, until taskFinished
  (c) model     analyse_image on images decoded in advance, on `infer_workers` threads

Every mode uses one engine and settings whose duplicate threshold is 1.01, above any cosine
similarity, so a photo seen again never counts as a duplicate and all three do the same work.
`--trace` instruments the pipeline from the outside (wrappers around its stage functions, and a
sampler of its queues and CPU use) to show where the time goes; it changes no product code.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil  # noqa: E402

from tests.support.imageserver import ImageServer  # noqa: E402
from tests.support.imageserver import _Handler as ImageServerHandler  # noqa: E402

SHARED = Path(os.environ.get("FACEBATCH_SHARED", REPO.parent / "shared"))
FACES = SHARED / "faces"
MODELS = Path(os.environ.get("FACEBATCH_MODEL_DIR", SHARED / "models"))
DUPLICATE_THRESHOLD = 1.01  # cosine similarity never exceeds 1: duplicates never trigger
RESULT_TAG = "BENCH_RESULT_JSON "
TARGET_B_OVER_A = 3.0
TARGET_B_OVER_C = 0.9
TARGET_RSS_GROWTH_MB = 100.0
MB = 1024 * 1024
LETTER = {"seed": "a", "pipeline": "b", "model": "c"}


# -- inputs ------------------------------------------------------------------------------------
def single_face_photos() -> list[str]:
    """identities/*, probes/* and edge/rgba_32bit.png: the photos that show exactly one face."""
    with (FACES / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    chosen = [
        r["path"]
        for r in rows
        if r["faces"] == "1"
        and (r["path"].startswith(("identities/", "probes/")) or r["path"] == "edge/rgba_32bit.png")
    ]
    if not chosen:
        raise SystemExit(f"No single-face photos listed in {FACES / 'manifest.csv'}")
    return chosen


def make_users(base_url: str, photos: list[str], n: int) -> list[tuple[str, str]]:
    return [(f"user{i:06d}", f"{base_url}/faces/{photos[i % len(photos)]}?u={i}") for i in range(n)]


def bench_settings(args: argparse.Namespace):
    from facebatch_gui.core.settings import BatchSettings

    values: dict[str, int] = {}
    if args.workers:
        values["infer_workers"] = args.workers
    if args.fetch_workers:
        values["fetch_workers"] = args.fetch_workers
    settings = BatchSettings(**values)
    # The field is bounded at 1.0 (a real threshold never needs more); model_copy does not
    # validate, which is what lets the benchmark turn duplicate detection off entirely.
    quality = settings.quality.model_copy(update={"duplicate_threshold": DUPLICATE_THRESHOLD})
    return settings.model_copy(update={"quality": quality})


# -- measuring ---------------------------------------------------------------------------------
class Sampler:
    """Samples this process's RSS (and, when given, more probes) every `interval_s` seconds."""

    def __init__(
        self, interval_s: float = 0.02, probe: Callable[[], dict[str, float]] | None = None
    ) -> None:
        self.interval_s = interval_s
        self.probe = probe
        self.proc = psutil.Process()
        self.peak_rss = 0
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-sampler")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            if self.probe is not None:
                # A probe racing with the pipeline's shutdown is harmless: skip that sample.
                with suppress(Exception):
                    self.samples.append(self.probe())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)


@dataclass
class Figure:
    name: str
    images: int
    wall_s: float
    cpu_s: float
    peak_rss: int
    outcomes: Counter[str] = field(default_factory=Counter)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_util(self) -> float:
        """Share of all cores this process kept busy during the run."""
        return self.cpu_s / (self.wall_s * (os.cpu_count() or 1)) if self.wall_s > 0 else 0.0


def cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@contextmanager
def measured(name: str, images: int, probe=None) -> Iterator[tuple[Figure, Sampler]]:
    fig = Figure(name=name, images=images, wall_s=0.0, cpu_s=0.0, peak_rss=0)
    with Sampler(probe=probe) as sampler:
        sys0 = psutil.cpu_times()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        yield fig, sampler
        fig.wall_s = time.perf_counter() - t0
        fig.cpu_s = cpu_seconds() - cpu0
        sys1 = psutil.cpu_times()
    fig.peak_rss = sampler.peak_rss
    # The machine is shared: show how much of it the hypervisor (steal) and other processes took.
    span = fig.wall_s * (os.cpu_count() or 1)
    steal = getattr(sys1, "steal", 0.0) - getattr(sys0, "steal", 0.0)
    busy = (sys1.user + sys1.system) - (sys0.user + sys0.system)
    others = max(0.0, busy - fig.cpu_s)
    fig.extra["machine"] = (
        f"steal {100 * steal / span:.0f}%, other processes {100 * others / span:.0f}% of all cores"
    )


# -- (a) the seed's way --------------------------------------------------------------------------
def run_seed(engine, users, settings, workdir: Path) -> Figure:
    import httpx

    from facebatch_gui.core.analysis import analyse_image, decode_for_analysis
    from facebatch_gui.core.errors import ItemError
    from facebatch_gui.core.gallery import Gallery
    from facebatch_gui.core.records import ItemResult, utc_now
    from facebatch_gui.core.store import FaceRecord, SqliteStore

    q = settings.quality
    store = SqliteStore(workdir / "seed.db")
    gallery = Gallery(engine.identity.embedding_dim)
    steps: Counter[str] = Counter()
    try:
        with measured("seed", len(users)) as (fig, _), httpx.Client(timeout=30.0) as client:
            for index, (user_id, url) in enumerate(users):
                t0 = time.perf_counter()
                response = client.get(url)
                response.raise_for_status()
                data = response.content
                t1 = time.perf_counter()
                try:
                    image = decode_for_analysis(data, q)
                    t2 = time.perf_counter()
                    a = analyse_image(engine, image, q)
                except ItemError as exc:
                    fig.outcomes[str(exc.code)] += 1
                    continue
                t3 = time.perf_counter()
                other, similarity = gallery.best_match(a.embedding, exclude=user_id)
                if other and similarity >= q.duplicate_threshold:
                    fig.outcomes["duplicate_face"] += 1
                    continue
                result = ItemResult(
                    user_id=user_id,
                    status=True,
                    avatar_image_url=url,
                    bbox=a.bbox,
                    det_score=round(a.chosen.score, 4),
                    quality=a.quality,
                    face_count=len(a.faces),
                    finished_at=utc_now(),
                )
                face = FaceRecord(
                    user_id=user_id,
                    embedding=a.embedding,
                    pack=engine.identity,
                    bbox=a.bbox,
                    det_score=float(a.chosen.score),
                    quality=a.quality.model_dump(),
                    thumbnail_jpeg=a.thumbnail_jpeg(),
                    source_url=url,
                )
                result = store.commit_registration(
                    None, index, face, result, replace=False, create_user=True
                )
                gallery.upsert(user_id, a.embedding)
                t4 = time.perf_counter()
                fig.outcomes["ok" if result.status else str(result.error_code)] += 1
                steps["download"] += t1 - t0
                steps["decode"] += t2 - t1
                steps["analyse"] += t3 - t2
                steps["store"] += t4 - t3
        per_user = {k: round(1000 * v / len(users), 1) for k, v in steps.items()}
        fig.extra["mean ms per user"] = per_user
    finally:
        store.close()
    return fig


# -- (b) the product pipeline ----------------------------------------------------------------------
class Trace:
    """Wraps the pipeline's stage functions from the outside; records wall and thread-CPU time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.roles: dict[int, set[str]] = defaultdict(set)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        trace = self

        def wrapper(*a, **kw):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return original(*a, **kw)
            finally:
                w, c = time.perf_counter() - w0, time.thread_time() - c0
                with trace.lock:
                    trace.wall[label] += w
                    trace.cpu[label] += c
                    trace.calls[label] += 1
                    trace.roles[threading.get_native_id()].add(label)

        setattr(owner, attr, wrapper)
        self._undo.append(lambda: setattr(owner, attr, original))

    def undo(self) -> None:
        for step in reversed(self._undo):
            step()
        self._undo.clear()

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            label: {
                "calls": self.calls[label],
                "wall_ms_per_call": round(1000 * self.wall[label] / self.calls[label], 1),
                "cpu_ms_per_call": round(1000 * self.cpu[label] / self.calls[label], 1),
            }
            for label in self.calls
        }


def thread_cpu_by_role(
    trace: Trace, before: dict[int, float], last: dict[int, float]
) -> dict[str, float]:
    """CPU seconds of this process's native threads during the run, grouped by what they ran.

    `last` holds each thread's CPU time as last sampled, so threads that ended still count.
    """
    out: Counter[str] = Counter()
    for tid, total in last.items():
        spent = total - before.get(tid, 0.0)
        if spent <= 0.005:
            continue
        roles = trace.roles.get(tid)
        if roles:
            key = "+".join(sorted(roles))
        elif tid == threading.main_thread().native_id:
            key = "main (Qt event loop)"
        else:
            key = "other (settle loop between commits, sampler, ...)"
        out[key] += spent
    return {k: round(v, 2) for k, v in out.most_common()}


def run_pipeline(engine, users, settings, workdir: Path, *, trace: bool) -> Figure:
    from PySide6.QtCore import QCoreApplication

    import facebatch_gui.core.pipeline as pipeline_mod
    from facebatch_gui.core.fetcher import Fetcher
    from facebatch_gui.core.records import UserEntry
    from facebatch_gui.core.store import SqliteStore
    from facebatch_gui.qt.runner import TaskManager

    app = QCoreApplication.instance() or QCoreApplication([sys.argv[0]])
    entries = [UserEntry(user_id=u, avatar_image_url=url) for u, url in users]
    store = SqliteStore(workdir / "pipeline.db")
    manager = TaskManager(store, engine)
    errors: list[str] = []
    manager.taskErrored.connect(lambda _task, message: errors.append(message))
    manager.taskFinished.connect(lambda _task: app.quit())

    tracer = Trace() if trace else None
    probe = None
    threads_before: dict[int, float] = {}
    thread_cpu: dict[int, float] = {}
    if tracer is not None:
        tracer.wrap(Fetcher, "fetch", "fetch")
        tracer.wrap(pipeline_mod, "decode_for_analysis", "decode")
        tracer.wrap(pipeline_mod, "analyse_image", "analyse")
        tracer.wrap(store, "commit_registration", "commit")
        tracer.wrap(ImageServerHandler, "do_GET", "server")
        proc = psutil.Process()
        threads_before = {t.id: t.user_time + t.system_time for t in proc.threads()}
        proc.cpu_percent(None)

        def probe() -> dict[str, float]:
            for t in proc.threads():
                thread_cpu[t.id] = t.user_time + t.system_time
            runner = next(iter(manager.runners.values()), None)
            p = runner.pipeline if runner is not None else None
            return {
                "decoded_q": p._decoded.qsize() if p else -1,
                "done_q": p._done.qsize() if p else -1,
                "input_left": len(p._input) if p else -1,
                "threads": proc.num_threads(),
                "cpu_pct": proc.cpu_percent(None),
            }

    try:
        with measured("pipeline", len(users), probe=probe) as (fig, sampler):
            task_id = manager.start_register(entries, settings)
            app.exec()
        manager.wait_all(30_000)
        record = store.get_task(task_id, with_results=True)
        assert record is not None
        fig.outcomes.update(
            "ok" if r.status else str(r.error_code) for r in record.results if r is not None
        )
        fig.extra["task status"] = record.status.value
        if errors:
            fig.extra["task errors"] = errors
        fig.extra["infer_workers"] = settings.infer_workers
        fig.extra["fetch_workers"] = settings.fetch_workers
        if tracer is not None:
            fig.extra["trace: per call"] = tracer.summary()
            fig.extra["trace: thread CPU s by role"] = thread_cpu_by_role(
                tracer, threads_before, thread_cpu
            )
            fig.extra["trace: samples"] = summarise_samples(
                sampler.samples, queue_cap=2 * settings.infer_workers + 2
            )
    finally:
        if tracer is not None:
            tracer.undo()
        store.close()
    return fig


def summarise_samples(samples: list[dict[str, float]], queue_cap: int) -> dict[str, object]:
    live = [s for s in samples if s["decoded_q"] >= 0 and s["input_left"] != -1]
    # Only the steady part: while downloads are still being handed out.
    steady = [s for s in live if s["input_left"] > 0] or live
    if not steady:
        return {}
    n = len(steady)
    cpu = [s["cpu_pct"] for s in steady[1:]] or [0.0]
    return {
        "samples": n,
        "decoded queue mean": round(sum(s["decoded_q"] for s in steady) / n, 2),
        "decoded queue empty (infer starved) %": round(
            100 * sum(s["decoded_q"] == 0 for s in steady) / n, 1
        ),
        f"decoded queue full (cap {queue_cap}) %": round(
            100 * sum(s["decoded_q"] >= queue_cap for s in steady) / n, 1
        ),
        "done queue mean": round(sum(s["done_q"] for s in steady) / n, 2),
        "threads max": max(s["threads"] for s in steady),
        "process CPU % mean (100 = one core)": round(sum(cpu) / len(cpu), 1),
    }


# -- (c) the model alone -------------------------------------------------------------------------
def run_model(engine, photos_bytes: list[bytes], n: int, settings) -> Figure:
    from facebatch_gui.core.analysis import analyse_image, decode_for_analysis
    from facebatch_gui.core.errors import ItemError

    q = settings.quality
    decoded = [decode_for_analysis(data, q) for data in photos_bytes]
    images = [decoded[i % len(decoded)] for i in range(n)]
    per_call: list[float] = []

    def one(image) -> str:
        t0 = time.perf_counter()
        try:
            analyse_image(engine, image, q)
            return "ok"
        except ItemError as exc:
            return str(exc.code)
        finally:
            per_call.append(time.perf_counter() - t0)

    with (
        measured("model", n) as (fig, _),
        ThreadPoolExecutor(max_workers=settings.infer_workers) as pool,
    ):
        fig.outcomes.update(pool.map(one, images))
    fig.extra["infer threads"] = settings.infer_workers
    fig.extra["analyse wall ms per call"] = round(1000 * sum(per_call) / len(per_call), 1)
    return fig


# -- reporting -----------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_figure(fig: Figure) -> None:
    print(
        f"  ({LETTER[fig.name]}) {fig.name:<9} {fig.rate:7.2f} images/s   "
        f"wall {fig.wall_s:7.2f} s   "
        f"CPU {fig.cpu_s:7.2f} s ({100 * fig.cpu_util:.0f}% of {os.cpu_count()} cores)   "
        f"peak RSS {fig.peak_rss / MB:7.1f} MB"
    )
    print(f"      outcomes: {dict(fig.outcomes)}")
    for key, value in fig.extra.items():
        print(f"      {key}: {value}")


def figure_json(fig: Figure) -> dict[str, object]:
    return {
        "name": fig.name,
        "images": fig.images,
        "wall_s": fig.wall_s,
        "cpu_s": fig.cpu_s,
        "rate": fig.rate,
        "peak_rss": fig.peak_rss,
        "outcomes": dict(fig.outcomes),
    }


def run_benchmarks(args: argparse.Namespace) -> int:
    from facebatch_gui.core.analysis import analyse_image, decode_for_analysis
    from facebatch_gui.core.engine import FaceEngine

    if not (FACES / "manifest.csv").is_file():
        raise SystemExit(f"Photos not found at {FACES} (set FACEBATCH_SHARED)")
    if not MODELS.is_dir() or not any(MODELS.glob("*.onnx")):
        raise SystemExit(f"Model pack not found at {MODELS} (set FACEBATCH_MODEL_DIR)")
    photos = single_face_photos()
    settings = bench_settings(args)
    q = settings.quality
    t0 = time.perf_counter()
    engine = FaceEngine(MODELS, det_size=q.det_size, det_threshold=q.det_threshold)
    photo_bytes = [(FACES / p).read_bytes() for p in photos]
    # Warm the sessions once, so that no mode pays for ONNX Runtime's first-run setup.
    analyse_image(engine, decode_for_analysis(photo_bytes[0], q), q)
    load_s = time.perf_counter() - t0
    rss_ready = psutil.Process().memory_info().rss
    modes = ["seed", "pipeline", "model"] if args.only == "all" else [args.only]
    quiet = args.json

    if not quiet:
        print(
            f"FaceBatch pipeline benchmark: {args.users} users over {len(photos)} single-face "
            f"photos, server latency {args.latency_ms:g} ms, {os.cpu_count()} CPUs"
        )
        print(
            f"  settings: infer_workers={settings.infer_workers} "
            f"fetch_workers={settings.fetch_workers} det_size={q.det_size}; duplicate_threshold="
            f"{DUPLICATE_THRESHOLD} for all modes, so duplicates never trigger"
        )
        print(
            f"  engine: {engine.identity.name} loaded and warmed in {load_s:.2f} s; "
            f"RSS then {rss_ready / MB:.1f} MB"
        )

    figures: dict[str, Figure] = {}
    with (
        tempfile.TemporaryDirectory(prefix="facebatch-bench-") as tmp,
        ImageServer(FACES, latency_s=args.latency_ms / 1000) as server,
    ):
        users = make_users(server.base_url, photos, args.users)
        for mode in modes:
            workdir = Path(tmp) / mode
            workdir.mkdir()
            if mode == "seed":
                fig = run_seed(engine, users, settings, workdir)
            elif mode == "pipeline":
                fig = run_pipeline(engine, users, settings, workdir, trace=args.trace)
            else:
                fig = run_model(engine, photo_bytes, args.users, settings)
            figures[mode] = fig
            if not quiet:
                print_figure(fig)

    peak = ru_maxrss_bytes()
    if args.json:
        payload = {
            "users": args.users,
            "latency_ms": args.latency_ms,
            "rss_ready": rss_ready,
            "ru_maxrss": peak,
            "figures": {k: figure_json(v) for k, v in figures.items()},
        }
        print(RESULT_TAG + json.dumps(payload), flush=True)
        return 0

    a, b, c = figures.get("seed"), figures.get("pipeline"), figures.get("model")
    print("  ratios:")
    if a and b:
        r = b.rate / a.rate
        ok = r >= TARGET_B_OVER_A
        print(f"    b/a = {r:5.2f}   (target >= {TARGET_B_OVER_A:g}: {verdict(ok)})")
    if b and c:
        r = b.rate / c.rate
        ok = r >= TARGET_B_OVER_C
        print(f"    b/c = {r:5.2f}   (target >= {TARGET_B_OVER_C:g}: {verdict(ok)})")
    print(f"  peak RSS of this process (ru_maxrss): {peak / MB:.1f} MB")
    return 0


def run_rss_scaling(args: argparse.Namespace) -> int:
    """Run the pipeline alone in fresh processes at two sizes; compare their peak RSS."""
    sizes = [int(x) for x in args.rss_users.split(",")]
    print(
        f"RSS scaling of the pipeline: users {sizes}, latency {args.latency_ms:g} ms, "
        "each in a fresh process (--only pipeline)"
    )
    peaks: dict[int, dict[str, object]] = {}
    for n in sizes:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--only",
            "pipeline",
            "--users",
            str(n),
            "--latency-ms",
            str(args.latency_ms),
            "--json",
        ]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        if args.fetch_workers:
            cmd += ["--fetch-workers", str(args.fetch_workers)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_TAG)), None)
        if done.returncode != 0 or line is None:
            print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
            raise SystemExit(f"the run with {n} users failed (exit {done.returncode})")
        payload = json.loads(line[len(RESULT_TAG) :])
        peaks[n] = payload
        fig = payload["figures"]["pipeline"]
        print(
            f"  {n:>6} users: peak RSS {payload['ru_maxrss'] / MB:7.1f} MB (ru_maxrss)   "
            f"RSS after engine load {payload['rss_ready'] / MB:7.1f} MB   "
            f"{fig['rate']:6.2f} images/s in {fig['wall_s']:.1f} s   outcomes {fig['outcomes']}"
        )
    lo, hi = peaks[sizes[0]], peaks[sizes[-1]]
    growth = (hi["ru_maxrss"] - lo["ru_maxrss"]) / MB
    print(
        f"  RSS growth {sizes[0]} -> {sizes[-1]} users: {growth:+.1f} MB   "
        f"(target < {TARGET_RSS_GROWTH_MB:g} MB: {verdict(growth < TARGET_RSS_GROWTH_MB)})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200, help="number of users (default 200)")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="server delay per image")
    parser.add_argument("--workers", type=int, default=0, help="BatchSettings.infer_workers")
    parser.add_argument("--fetch-workers", type=int, default=0, help="BatchSettings.fetch_workers")
    parser.add_argument(
        "--only", choices=["all", "seed", "pipeline", "model"], default="all", help="one mode"
    )
    parser.add_argument(
        "--rss-scaling", action="store_true", help="peak RSS of the pipeline at two sizes"
    )
    parser.add_argument(
        "--rss-users", default="200,2000", help="sizes for --rss-scaling (default 200,2000)"
    )
    parser.add_argument("--trace", action="store_true", help="instrument the pipeline's stages")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error("--users must be at least 1")
    if args.rss_scaling:
        return run_rss_scaling(args)
    return run_benchmarks(args)


if __name__ == "__main__":
    sys.exit(main())
