"""The failure report: one CSV row per failed user, for whoever owns the bad photos."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from facebatch_gui.core.records import ItemResult, UserEntry

FAILURE_COLUMNS = (
    "user_id",
    "operation",
    "error_code",
    "error_message",
    "avatar_image_url",
    "finished_at",
)


def write_failures_csv(results: Iterable[ItemResult], path: str | Path) -> int:
    """Write failed results; returns how many rows were written. Written whole or not at all."""
    target = Path(path)
    partial = target.with_name(target.name + ".part")
    count = 0
    with partial.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(FAILURE_COLUMNS)
        for r in results:
            if r.status:
                continue
            writer.writerow(
                [
                    r.user_id,
                    r.operation.value,
                    r.error_code.value if r.error_code else "",
                    r.error_message or "",
                    r.avatar_image_url or "",
                    r.finished_at or "",
                ]
            )
            count += 1
    partial.replace(target)
    return count


RESULT_COLUMNS = (
    "user_id",
    "avatar_image_url",
    "state",
    "operation",
    "error_code",
    "error_message",
    "duplicate_of",
    "similarity",
    "det_score",
    "face_size",
    "blur",
    "finished_at",
)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary name and rename, so a failed write never leaves half a file."""
    target = Path(path)
    partial = target.with_name(target.name + ".part")
    partial.write_text(text, encoding="utf-8", newline="")
    partial.replace(target)


def write_user_list_csv(entries: Iterable[UserEntry], path: str | Path) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["user_id", "avatar_image_url"])
    count = 0
    for entry in entries:
        writer.writerow([entry.user_id, entry.avatar_image_url])
        count += 1
    write_text_atomic(path, buffer.getvalue())
    return count


def write_results_csv(
    rows: Iterable[tuple[UserEntry, str, ItemResult | None, str | None]], path: str | Path
) -> int:
    """Every row of a list: (entry, state, result or None, problem found before running)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RESULT_COLUMNS)
    count = 0
    for entry, state, r, problem in rows:
        q = r.quality if r is not None else None
        code = r.error_code.value if r is not None and r.error_code else ""
        writer.writerow(
            [
                entry.user_id,
                entry.avatar_image_url,
                state,
                r.operation.value if r is not None else "",
                code or ("invalid_input" if problem else ""),
                (r.error_message if r is not None and r.error_message else None) or problem or "",
                r.duplicate_of if r is not None and r.duplicate_of else "",
                f"{r.similarity:.4f}" if r is not None and r.similarity is not None else "",
                f"{r.det_score:.4f}" if r is not None and r.det_score is not None else "",
                q.face_size if q else "",
                q.blur if q else "",
                r.finished_at if r is not None and r.finished_at else "",
            ]
        )
        count += 1
    write_text_atomic(path, buffer.getvalue())
    return count
