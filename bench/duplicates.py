"""Duplicate-check figures at scale: seed N enrolled faces, then time what a batch does.

    python bench/duplicates.py --faces 100000 --dim 512 --dsn "host=127.0.0.1 port=5432 ..."

For each store (SQLite always; Postgres with --dsn or FACEBATCH_TEST_PG_DSN, in a scratch database
that is dropped afterwards): `prepare` = load_gallery(space) + building the in-process Gallery, as a
batch does at task start; `check` = Gallery.best_match per face (mean and p95 over --queries
faces). Where the pgvector extension exists, `match_faces` (store-side, HNSW) is timed too.
Faces are seeded with COPY / executemany straight into the tables, not through the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

if "--blas-threads" in sys.argv:  # must be set before numpy loads OpenBLAS
    _n = sys.argv[sys.argv.index("--blas-threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.gallery import Gallery
from facebatch_gui.core.store.base import FaceStore
from facebatch_gui.core.store.sqlite import SqliteStore


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def time_checks(gallery: Gallery, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        gallery.best_match(q, exclude="nobody")
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.fmean(times), float(np.percentile(times, 95))


def measure(name: str, store: FaceStore, pack: PackIdentity, queries: np.ndarray) -> None:
    t0 = time.perf_counter()
    snap = store.load_gallery(pack.space)
    t_load = time.perf_counter() - t0
    gallery = Gallery(pack.embedding_dim, snap)
    t_prep = time.perf_counter() - t0
    mean, p95 = time_checks(gallery, queries)
    print(
        f"{name:8s} faces={len(gallery):,} prepare={t_prep:.3f}s (load_gallery {t_load:.3f}s) "
        f"in-process check mean={mean:.3f}ms p95={p95:.3f}ms over {len(queries)} queries",
        flush=True,
    )


def seed_sqlite(path: Path, pack: PackIdentity, emb: np.ndarray) -> SqliteStore:
    store = SqliteStore(path)
    store.close()
    conn = sqlite3.connect(path)
    now = "2026-01-01T00:00:00.000+00:00"
    q = json.dumps({"face_size": 100, "blur": 100.0, "det_score": 0.9})
    with conn:
        conn.executemany(
            "INSERT INTO users(user_id, created_at) VALUES (?, ?)",
            ((f"user-{i}", now) for i in range(len(emb))),
        )
        conn.executemany(
            "INSERT INTO faces(user_id, embedding, pack_space, pack, bbox, det_score, quality,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                (
                    f"user-{i}",
                    emb[i].tobytes(),
                    pack.space,
                    pack.to_json(),
                    "[0,0,1,1]",
                    0.9,
                    q,
                    now,
                    now,
                )
                for i in range(len(emb))
            ),
        )
    conn.close()
    return SqliteStore(path)


def seed_postgres(dsn: str, pack: PackIdentity, emb: np.ndarray) -> None:
    """COPY straight into the tables, embeddings in the schema's form (float32 big-endian)."""
    import psycopg

    pack_json = pack.to_json()
    quality = json.dumps({"face_size": 100, "blur": 100.0, "det_score": 0.9})
    big_endian = emb.astype(">f4")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (id) FROM STDIN") as copy:
            for i in range(len(emb)):
                copy.write_row((f"user-{i}",))
        with cur.copy(
            "COPY faces (user_id, embedding, embedding_dim, pack_space, pack_name, pack, bbox,"
            " det_score, quality) FROM STDIN"
        ) as copy:
            for i in range(len(emb)):
                copy.write_row(
                    (
                        f"user-{i}",
                        big_endian[i].tobytes(),
                        emb.shape[1],
                        pack.space,
                        pack.name,
                        pack_json,
                        "[0, 0, 1, 1]",
                        0.9,
                        quality,
                    )
                )
        cur.execute("ANALYZE faces")


def bench_match_faces(dsn: str, pack: PackIdentity, queries: np.ndarray) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        has = conn.execute("SELECT to_regproc('match_faces') IS NOT NULL").fetchone()
        if not has or not has[0]:
            print(
                "postgres match_faces: not measured: the vector extension is not available "
                "on this server (schema.sql skipped its optional part)",
                flush=True,
            )
            return
        times = []
        for q in queries:
            vec = "[" + ",".join(f"{v:.7f}" for v in q) + "]"
            t0 = time.perf_counter()
            conn.execute(
                "SELECT * FROM match_faces(%s::vector, 0.45, 1, %s)", (vec, pack.space)
            ).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
        print(
            f"postgres match_faces check mean={statistics.fmean(times):.3f}ms "
            f"p95={np.percentile(times, 95):.3f}ms over {len(queries)} queries",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dsn", default=os.environ.get("FACEBATCH_TEST_PG_DSN"))
    ap.add_argument(
        "--blas-threads", help="BLAS threads for the check (default: OpenBLAS's own choice)"
    )
    args = ap.parse_args()
    pack = PackIdentity("bench", "d" * 64, "r" * 64, 640, args.dim)
    emb = unit_rows(args.faces, args.dim, 1)
    queries = unit_rows(args.queries, args.dim, 2)
    threads = args.blas_threads or "default"
    print(
        f"{args.faces:,} faces of {args.dim}-d; {os.cpu_count()} CPUs; BLAS threads {threads}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = seed_sqlite(Path(tmp) / "bench.db", pack, emb)
        print(f"sqlite   seeded in {time.perf_counter() - t0:.1f}s", flush=True)
        measure("sqlite", store, pack, queries)
        store.close()
    if not args.dsn:
        print("postgres: not measured (give --dsn or FACEBATCH_TEST_PG_DSN)")
        return 0
    import psycopg
    from psycopg import conninfo

    from facebatch_gui.core.store.postgres import PostgresStore, apply_schema

    name = f"facebatch_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = conninfo.make_conninfo(args.dsn, dbname=name)
    try:
        apply_schema(dsn)
        t0 = time.perf_counter()
        seed_postgres(dsn, pack, emb)
        print(f"postgres seeded in {time.perf_counter() - t0:.1f}s", flush=True)
        pg = PostgresStore(dsn)
        measure("postgres", pg, pack, queries)
        measure("postgres", pg, pack, queries)  # a second, warm-cache run
        pg.close()
        bench_match_faces(dsn, pack, queries)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
