"""The failure report: one CSV row per failed user, for whoever owns the bad photos."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from facebatch_gui.core.records import ItemResult

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
