"""Read user lists (CSV, the seed's JSON request body, or a folder of photos) and check each row.

Reading never drops a row: a malformed row still becomes an entry (with its line number), and the
check turns it into an `invalid_input` result, so that every row of the input shows up in the
task's results and in the failure report.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from facebatch_gui.core.errors import ErrorCode, FaceBatchError, ItemError
from facebatch_gui.core.fetcher import classify_source
from facebatch_gui.core.records import Operation, UserEntry

MAX_USER_ID_LENGTH = 128
MAX_URL_LENGTH = 4096
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class InputFileError(FaceBatchError):
    """The input file as a whole cannot be read (missing, wrong format, no header)."""


def _where(entry: UserEntry) -> str:
    return f"line {entry.line}: " if entry.line is not None else ""


def check_entry(entry: UserEntry, operation: Operation) -> ItemError | None:
    """Row-level problems found before any work: empty or overlong id, malformed URL."""
    uid = entry.user_id
    if not uid.strip():
        return ItemError(ErrorCode.INVALID_INPUT, f"{_where(entry)}user_id is empty")
    if uid != uid.strip():
        return ItemError(
            ErrorCode.INVALID_INPUT, f"{_where(entry)}user_id {uid!r} has leading/trailing spaces"
        )
    if len(uid) > MAX_USER_ID_LENGTH:
        return ItemError(
            ErrorCode.INVALID_INPUT,
            f"{_where(entry)}user_id is {len(uid)} characters long; at most "
            f"{MAX_USER_ID_LENGTH} are allowed",
        )
    if any(ord(c) < 32 for c in uid):
        return ItemError(ErrorCode.INVALID_INPUT, f"{_where(entry)}user_id has control characters")
    if operation == Operation.REGISTER:
        url = entry.avatar_image_url
        if len(url) > MAX_URL_LENGTH:
            return ItemError(
                ErrorCode.INVALID_INPUT, f"{_where(entry)}avatar_image_url is too long"
            )
        try:
            kind = classify_source(url)
        except ItemError as exc:
            return ItemError(exc.code, f"{_where(entry)}{exc.message}")
        if kind == "http":
            try:
                urlsplit(url.strip()).port  # noqa: B018 - raises on a malformed port
            except ValueError as exc:
                return ItemError(ErrorCode.INVALID_INPUT, f"{_where(entry)}malformed URL: {exc}")
    return None


def check_entries(entries: Iterable[UserEntry], operation: Operation) -> dict[int, ItemError]:
    """Problems by entry index, including the second and later rows of a repeated user_id."""
    problems: dict[int, ItemError] = {}
    first_seen: dict[str, UserEntry] = {}
    for index, entry in enumerate(entries):
        error = check_entry(entry, operation)
        if error is None and entry.user_id in first_seen:
            first = first_seen[entry.user_id]
            where = f" (first at line {first.line})" if first.line is not None else ""
            error = ItemError(
                ErrorCode.INVALID_INPUT,
                f"{_where(entry)}user_id {entry.user_id!r} appears twice in this batch{where}",
            )
        if error is not None:
            problems[index] = error
        else:
            first_seen[entry.user_id] = entry
    return problems


def _text(value: object) -> str:
    """A JSON value as text; only a missing value or null is empty (a user_id of 0 is "0")."""
    return "" if value is None else str(value)


def entries_from_json(data: object, operation: Operation) -> list[UserEntry]:
    """The seed's bodies: {"users": [{user_id, avatar_image_url}]} or {"user_ids": [...]}."""
    if isinstance(data, dict):
        if "users" in data:
            data = data["users"]
        elif "user_ids" in data:
            data = data["user_ids"]
        else:
            raise InputFileError('JSON must have a "users" list (or "user_ids" for deletion)')
    if not isinstance(data, list):
        raise InputFileError("JSON must hold a list of users")
    entries = []
    for i, item in enumerate(data, start=1):
        if isinstance(item, str):
            entries.append(UserEntry(item, "", line=i))
        elif isinstance(item, dict):
            entries.append(
                UserEntry(
                    _text(item.get("user_id")),
                    _text(item.get("avatar_image_url")),
                    line=i,
                )
            )
        else:
            entries.append(UserEntry("", "", line=i))
    return entries


def entries_from_csv(text: str, *, require_url: bool = True) -> list[UserEntry]:
    if text.startswith("\ufeff"):
        text = text[1:]
    # Blank lines before the header are common in hand-made files; skip them, keep line numbers.
    body = text.lstrip("\r\n")
    offset = text[: len(text) - len(body)].count("\n")
    text = body
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if first_line else ","
    # strict: an unclosed quote must not silently swallow the rows after it into one cell.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputFileError(f"The CSV header (line {offset + 1}) cannot be read: {exc}") from exc
    if header is None:
        raise InputFileError("The CSV file is empty")
    columns = [h.strip().lower() for h in header]
    if "user_id" not in columns:
        raise InputFileError(f"The CSV header has no user_id column (found: {', '.join(header)})")
    if require_url and "avatar_image_url" not in columns:
        raise InputFileError(
            f"The CSV header has no avatar_image_url column (found: {', '.join(header)})"
        )
    uid_col = columns.index("user_id")
    url_col = columns.index("avatar_image_url") if "avatar_image_url" in columns else None
    entries = []
    end = offset + reader.line_num  # the last physical line read so far
    try:
        for row in reader:
            # A row starts on the line after the previous one ended (quoted cells may span lines).
            line, end = end + 1, offset + reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            uid = row[uid_col] if uid_col < len(row) else ""
            url = row[url_col].strip() if url_col is not None and url_col < len(row) else ""
            entries.append(UserEntry(uid, url, line=line))
    except csv.Error as exc:
        raise InputFileError(
            f"The CSV row starting at line {end + 1} cannot be read: {exc}"
        ) from exc
    return entries


def entries_from_folder(folder: Path) -> list[UserEntry]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    return [UserEntry(p.stem, str(p.resolve())) for p in files]


def load_user_list(path: str | Path, operation: Operation = Operation.REGISTER) -> list[UserEntry]:
    source = Path(path)
    if source.is_dir():
        return entries_from_folder(source)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise InputFileError(f"Cannot read {source}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{source} is not UTF-8 text: {exc}") from exc
    if source.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{source} is not valid JSON: {exc}") from exc
        return entries_from_json(data, operation)
    return entries_from_csv(text, require_url=operation == Operation.REGISTER)


def entries_from_pasted_text(text: str) -> list[UserEntry]:
    """Rows copied from a spreadsheet (tabs) or a CSV (commas); a header row is skipped."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    delimiter = "\t" if any("\t" in line for line in lines) else ","
    entries: list[UserEntry] = []
    for i, cells in enumerate(csv.reader(lines, delimiter=delimiter)):
        if not cells:
            continue
        if i == 0 and cells[0].strip().lower() in ("user_id", "userid", "id"):
            continue
        url = cells[1].strip() if len(cells) > 1 else ""
        entries.append(UserEntry(cells[0].strip(), url))
    return entries
