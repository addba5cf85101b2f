"""One task's work, as stage loops for worker threads and a generator of per-user results.

    input ─► fetch (N) ─► [bounded] ─► decode+detect+embed (M) ─► [bounded] ─► settle (1)

Downloads overlap inference, and inference overlaps storage. `results()` is the settle stage: it
runs on its own worker, checks duplicates against an in-process gallery (so two users of one batch
with the same face are caught), writes each outcome atomically and yields it. Bounded queues keep
memory flat whatever the batch size. Nothing here knows about Qt: `run_in_threads` drives it with
plain threads, the Qt runner with a QThreadPool.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

from facebatch_gui.core.analysis import FaceAnalysis, analyse_image, decode_for_analysis
from facebatch_gui.core.engine import FaceEngine
from facebatch_gui.core.errors import ErrorCode, FaceBatchError, ItemError
from facebatch_gui.core.fetcher import Fetcher
from facebatch_gui.core.gallery import Gallery
from facebatch_gui.core.records import ItemResult, Operation, TaskStatus, UserEntry, utc_now
from facebatch_gui.core.settings import BatchSettings
from facebatch_gui.core.store.base import FaceRecord, FaceStore
from facebatch_gui.core.userlist import check_entries

log = logging.getLogger(__name__)

_POLL_S = 0.05
_HEARTBEAT_S = 5.0


@dataclass(slots=True)
class _Work:
    index: int
    entry: UserEntry
    data: bytes | None = None
    analysis: FaceAnalysis | None = None
    error: ItemError | None = None


class BatchPipeline:
    def __init__(
        self,
        *,
        operation: Operation,
        items: Sequence[tuple[int, UserEntry]],
        store: FaceStore | None,
        engine: FaceEngine | None,
        settings: BatchSettings | None = None,
        task_id: str | None = None,
        dry_run: bool = False,
    ) -> None:
        self.operation = operation
        self.items = list(items)
        self.store = store
        self.engine = engine
        self.settings = settings or BatchSettings()
        self.task_id = task_id
        self.dry_run = dry_run or store is None
        if operation == Operation.REGISTER and engine is None:
            raise FaceBatchError("Registration needs a loaded face engine")
        self._cancel = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._input: deque[tuple[int, UserEntry]] = deque()
        self._input_lock = threading.Lock()
        infer = self.settings.infer_workers
        # Downloads wait here as bytes (a few hundred KB each), not as decoded pictures, so that
        # memory stays flat however many fetch workers are blocked on a full queue.
        self._fetched: queue.Queue[_Work] = queue.Queue(maxsize=2 * infer + 2)
        self._done: queue.Queue[_Work] = queue.Queue(maxsize=32)
        self._fetcher: Fetcher | None = None
        self._has_face: set[str] = set()
        self._enrolled_here: set[str] = set()
        self.gallery: Gallery | None = None
        self.final_status: TaskStatus | None = None
        self._idle_ticks = False

    # -- control --------------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def stage_loops(self) -> list[Callable[[], None]]:
        """Blocking loops to run on worker threads beside `results()`; they end by themselves."""
        if self.operation != Operation.REGISTER or not self.items:
            return []
        fetchers = min(self.settings.fetch_workers, len(self.items))
        inferrers = min(self.settings.infer_workers, len(self.items))
        return [self._fetch_loop] * fetchers + [self._infer_loop] * inferrers

    # -- stage loops ----------------------------------------------------------------------------
    def _put(self, target: queue.Queue[_Work], work: _Work) -> None:
        while not self._stop.is_set():
            try:
                target.put(work, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _next_input(self) -> tuple[int, UserEntry] | None:
        with self._input_lock:
            return self._input.popleft() if self._input else None

    def _fetch_loop(self) -> None:
        while not self._ready.wait(_POLL_S):
            if self._stop.is_set():
                return
        while not self._stop.is_set() and not self.cancelled:
            item = self._next_input()
            if item is None:
                return
            work = _Work(*item)
            try:
                assert self._fetcher is not None
                work.data = self._fetcher.fetch(work.entry.avatar_image_url)
            except ItemError as exc:
                work.error = exc
            except Exception as exc:  # one user's failure stays with that user
                log.exception("fetch of %s failed", work.entry.user_id)
                work.error = ItemError(
                    ErrorCode.DOWNLOAD_FAILED, f"Unexpected error while fetching: {exc!r}"
                )
            if self.cancelled:
                return
            self._put(self._done if work.error else self._fetched, work)

    def _infer_loop(self) -> None:
        assert self.engine is not None
        q = self.settings.quality
        while not self._stop.is_set():
            try:
                work = self._fetched.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if self.cancelled:
                continue
            assert work.data is not None
            try:
                image = decode_for_analysis(work.data, q)
                work.data = None
                work.analysis = analyse_image(self.engine, image, q)
            except ItemError as exc:
                work.error = exc
            except Exception as exc:  # a pathological image must not stop the others
                log.exception("analysis of %s failed", work.entry.user_id)
                work.error = ItemError(
                    ErrorCode.NOT_AN_IMAGE, f"Face analysis failed on this image: {exc!r}"
                )
            work.data = None
            self._put(self._done, work)

    # -- the settle stage -----------------------------------------------------------------------
    def results(self, *, idle_ticks: bool = False) -> Iterator[ItemResult | None]:
        """Run the task to its end, yielding one result per user as it settles.

        With `idle_ticks`, also yield None when nothing settled for a moment, so that a consumer
        that batches results can flush them without waiting for the next one.
        """
        self._idle_ticks = idle_ticks
        if self.store is not None and self.task_id is not None and not self.dry_run:
            self.store.claim_task(self.task_id)
        try:
            yield from self._run()
        except GeneratorExit:
            self._finish_task(TaskStatus.INTERRUPTED, "The run was stopped before it finished")
            raise
        except Exception as exc:
            self._finish_task(TaskStatus.FAILED, f"{exc}")
            raise
        finally:
            self._stop.set()
            if self._fetcher is not None:
                self._fetcher.close()

    def _run(self) -> Iterator[ItemResult | None]:
        s = self.settings
        problems = check_entries((e for _, e in self.items), self.operation)
        valid: list[tuple[int, UserEntry]] = []
        refused: list[tuple[int, ItemResult]] = []
        for pos, (index, entry) in enumerate(self.items):
            error = problems.get(pos)
            if error is not None:
                refused.append((index, self._failure(entry, error)))
            else:
                valid.append((index, entry))
        yield from self._settle_many(refused)

        if self.operation == Operation.DELETE:
            yield from self._run_deletes(valid)
            return

        assert self.engine is not None
        to_fetch = yield from self._prechecks(valid)
        if not to_fetch:
            self._finish_task(TaskStatus.COMPLETED)
            return
        if self.store is not None:
            snapshot = self.store.load_gallery(self.engine.identity.space)
            if snapshot.other_spaces:
                packs = ", ".join(
                    f"{n} faces of pack '{p}'" for p, n in snapshot.other_spaces.items()
                )
                raise FaceBatchError(
                    f"The store holds {packs}, enrolled with another recogniser than the loaded "
                    f"pack '{self.engine.identity.name}'; embeddings of different packs cannot be "
                    "compared, so duplicates could not be checked. Load the pack the store was "
                    "enrolled with, or re-enroll those users."
                )
            self.gallery = Gallery(self.engine.identity.embedding_dim, snapshot)
        else:
            self.gallery = Gallery(self.engine.identity.embedding_dim)

        self._fetcher = Fetcher(
            s.fetch, max_connections=s.fetch_workers, cancelled=lambda: self.cancelled
        )
        outstanding = {index for index, _ in to_fetch}
        entries = dict(to_fetch)
        self._input.extend(to_fetch)
        self._ready.set()
        last_beat = time.monotonic()
        while outstanding and not self.cancelled:
            try:
                work = self._done.get(timeout=_POLL_S)
            except queue.Empty:
                last_beat = self._maybe_heartbeat(last_beat)
                if self._idle_ticks:
                    yield None
                continue
            outstanding.discard(work.index)
            yield self._settle_work(work)
            last_beat = self._maybe_heartbeat(last_beat)
        self._stop.set()
        yield from self._cancel_rest([(i, entries[i]) for i in sorted(outstanding)])
        self._finish_task(TaskStatus.CANCELLED if outstanding else TaskStatus.COMPLETED)

    def _prechecks(
        self, valid: list[tuple[int, UserEntry]]
    ) -> Generator[ItemResult, None, list[tuple[int, UserEntry]]]:
        """Fail fast, before any download, users that the store would refuse anyway."""
        s = self.settings
        if self.store is None:
            return valid
        ids = [e.user_id for _, e in valid]
        self._has_face = self.store.users_with_faces(ids)
        known = self.store.existing_users(ids) if not s.create_missing_users else set(ids)
        to_fetch = []
        refused: list[tuple[int, ItemResult]] = []
        for index, entry in valid:
            if entry.user_id not in known:
                error = ItemError(
                    ErrorCode.USER_NOT_FOUND, f"User {entry.user_id!r} does not exist in the store"
                )
            elif entry.user_id in self._has_face and not s.replace:
                error = ItemError(
                    ErrorCode.FACE_ALREADY_REGISTERED,
                    f"User {entry.user_id!r} already has a face; use replace to overwrite it",
                )
            else:
                to_fetch.append((index, entry))
                continue
            refused.append((index, self._failure(entry, error)))
        yield from self._settle_many(refused)
        return to_fetch

    def _run_deletes(self, valid: list[tuple[int, UserEntry]]) -> Iterator[ItemResult]:
        remaining = list(valid)
        last_beat = time.monotonic()
        while remaining and not self.cancelled:
            index, entry = remaining.pop(0)
            if self.store is None or self.dry_run:
                yield ItemResult(
                    user_id=entry.user_id,
                    status=True,
                    operation=Operation.DELETE,
                    finished_at=utc_now(),
                )
                continue
            try:
                yield self.store.commit_deletion(self.task_id, index, entry)
            except Exception as exc:  # noqa: BLE001 - a store failure is that user's result
                yield self._settle(index, self._db_failure(entry, exc))
            last_beat = self._maybe_heartbeat(last_beat)
        yield from self._cancel_rest(remaining)
        self._finish_task(TaskStatus.CANCELLED if remaining else TaskStatus.COMPLETED)

    def _settle_work(self, work: _Work) -> ItemResult:
        entry = work.entry
        if work.error is not None:
            return self._settle(work.index, self._failure(entry, work.error))
        a = work.analysis
        assert a is not None
        assert self.gallery is not None
        assert self.engine is not None
        s = self.settings
        threshold = s.quality.duplicate_threshold
        result = ItemResult(
            user_id=entry.user_id,
            status=True,
            avatar_image_url=entry.avatar_image_url,
            bbox=a.bbox,
            det_score=round(a.chosen.score, 4),
            quality=a.quality,
            face_count=len(a.faces),
            finished_at=utc_now(),
        )
        other, similarity = self.gallery.best_match(a.embedding, exclude=entry.user_id)
        if other and similarity >= threshold:
            when = "earlier in this batch" if other in self._enrolled_here else "already"
            error = ItemError(
                ErrorCode.DUPLICATE_FACE,
                f"This face matches user {other!r}, enrolled {when} "
                f"(similarity {similarity:.2f} >= {threshold:.2f})",
            )
            return self._settle(
                work.index,
                result.model_copy(
                    update={
                        "status": False,
                        "error_code": error.code,
                        "error_message": error.message,
                        "duplicate_of": other,
                        "similarity": round(similarity, 4),
                    }
                ),
            )
        if entry.user_id in self._has_face and s.replace and self.store is not None:
            result = self._check_replacement(entry, a, result)
            if not result.status:
                return self._settle(work.index, result)
        if self.dry_run or self.store is None:
            self.gallery.upsert(entry.user_id, a.embedding)
            self._enrolled_here.add(entry.user_id)
            return result
        if self.cancelled:
            error = ItemError(ErrorCode.CANCELLED, "Cancelled before this user's face was stored")
            return self._settle(work.index, self._failure(entry, error))
        face = FaceRecord(
            user_id=entry.user_id,
            embedding=a.embedding,
            pack=self.engine.identity,
            bbox=a.bbox,
            det_score=float(a.chosen.score),
            quality=a.quality.model_dump(),
            thumbnail_jpeg=a.thumbnail_jpeg(),
            source_url=entry.avatar_image_url,
        )
        try:
            result = self.store.commit_registration(
                self.task_id,
                work.index,
                face,
                result,
                replace=s.replace,
                create_user=s.create_missing_users,
            )
        except Exception as exc:  # noqa: BLE001 - a store failure is that user's result
            return self._settle(work.index, self._db_failure(entry, exc))
        if result.status:
            self.gallery.upsert(entry.user_id, a.embedding)
            self._enrolled_here.add(entry.user_id)
        return result

    def _check_replacement(
        self, entry: UserEntry, a: FaceAnalysis, result: ItemResult
    ) -> ItemResult:
        """A wrong photo on the right user is the costliest mistake: compare with the old face."""
        assert self.store is not None
        assert self.engine is not None
        old = self.store.get_face(entry.user_id)
        if old is None:
            return result
        threshold = self.settings.quality.duplicate_threshold
        if old.pack.space != self.engine.identity.space:
            return result.model_copy(
                update={
                    "warnings": [
                        *result.warnings,
                        f"identity_unverified: the replaced face was enrolled with pack "
                        f"'{old.pack.name}' and cannot be compared with the new one",
                    ]
                }
            )
        similarity = float(old.embedding @ a.embedding)
        if similarity >= threshold:
            return result.model_copy(update={"previous_similarity": round(similarity, 4)})
        message = (
            f"The new photo does not look like the face it replaces (similarity "
            f"{similarity:.2f} < {threshold:.2f}): check that the photo shows {entry.user_id!r}"
        )
        if self.settings.strict_replace:
            return result.model_copy(
                update={
                    "status": False,
                    "error_code": ErrorCode.IDENTITY_MISMATCH,
                    "error_message": message,
                    "previous_similarity": round(similarity, 4),
                }
            )
        return result.model_copy(
            update={
                "warnings": [*result.warnings, f"identity_mismatch: {message}"],
                "previous_similarity": round(similarity, 4),
            }
        )

    # -- helpers --------------------------------------------------------------------------------
    def _failure(self, entry: UserEntry, error: ItemError) -> ItemResult:
        extra = {k: v for k, v in error.details.items() if k in ItemResult.model_fields}
        return ItemResult.failure(entry, self.operation, error.code, error.message, **extra)

    def _db_failure(self, entry: UserEntry, exc: Exception) -> ItemResult:
        log.exception("store write for %s failed", entry.user_id)
        error = ItemError(
            ErrorCode.DATABASE_ERROR,
            f"The store refused user {entry.user_id!r}: {type(exc).__name__}: {exc}",
        )
        return self._failure(entry, error)

    def _settle(self, index: int, result: ItemResult) -> ItemResult:
        if self.store is not None and self.task_id is not None and not self.dry_run:
            try:
                self.store.record_result(self.task_id, index, result)
            except Exception:  # the item stays pending and a resume redoes it
                log.exception("could not record the result of %s", result.user_id)
        return result

    def _cancel_rest(self, rest: list[tuple[int, UserEntry]]) -> list[ItemResult]:
        """Settle every unfinished item as cancelled in one write, so cancel stays quick."""
        error = ItemError(ErrorCode.CANCELLED, "Cancelled before this user was processed")
        return self._settle_many([(index, self._failure(entry, error)) for index, entry in rest])

    def _settle_many(self, settled: list[tuple[int, ItemResult]]) -> list[ItemResult]:
        """Record results known before any work (bad rows, refusals, cancels) in one write."""
        if settled and self.store is not None and self.task_id is not None and not self.dry_run:
            try:
                self.store.record_results(self.task_id, settled)
            except Exception:  # the items stay pending and a resume redoes them
                log.exception("could not record %d results", len(settled))
        return [result for _, result in settled]

    def _maybe_heartbeat(self, last: float) -> float:
        now = time.monotonic()
        if now - last < _HEARTBEAT_S:
            return last
        if self.store is not None and self.task_id is not None and not self.dry_run:
            try:
                self.store.heartbeat(self.task_id)
            except Exception:  # noqa: BLE001 - a missed heartbeat is not worth a failure
                log.warning("heartbeat for task %s failed", self.task_id)
        return now

    def _finish_task(self, status: TaskStatus, error_message: str | None = None) -> None:
        self.final_status = status
        if self.store is not None and self.task_id is not None and not self.dry_run:
            self.store.set_task_status(self.task_id, status, error_message)


def run_in_threads(pipeline: BatchPipeline) -> Iterator[ItemResult]:
    """Drive a pipeline with plain threads (scripts, benchmarks); the GUI uses the Qt runner."""
    threads = [threading.Thread(target=loop, daemon=True) for loop in pipeline.stage_loops()]
    for thread in threads:
        thread.start()
    try:
        for result in pipeline.results():
            if result is not None:
                yield result
    finally:
        pipeline.cancel()
        for thread in threads:
            thread.join(timeout=30)
