"""Reading user lists (CSV, the seed's JSON bodies, photo folders) and the row checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facebatch_gui.core.errors import ErrorCode, ItemError
from facebatch_gui.core.records import Operation, UserEntry
from facebatch_gui.core.userlist import (
    MAX_USER_ID_LENGTH,
    InputFileError,
    check_entries,
    check_entry,
    entries_from_csv,
    entries_from_folder,
    entries_from_json,
    load_user_list,
)

HEADER = "user_id,avatar_image_url\n"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_with_utf8_bom(tmp_path: Path) -> None:
    """Excel writes a BOM; it must not end up in the first column's name."""
    path = tmp_path / "users.csv"
    text = HEADER + "alice,http://127.0.0.1/a.jpg\nj\u00fcrgen,http://127.0.0.1/j.jpg\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    entries = load_user_list(path)
    assert entries == [
        UserEntry("alice", "http://127.0.0.1/a.jpg", line=2),
        UserEntry("j\u00fcrgen", "http://127.0.0.1/j.jpg", line=3),
    ]
    assert check_entries(entries, Operation.REGISTER) == {}


def test_csv_bom_passed_as_text_is_ignored() -> None:
    entries = entries_from_csv("\ufeffuser_id,avatar_image_url\nbob,http://127.0.0.1/b.jpg\n")
    assert entries == [UserEntry("bob", "http://127.0.0.1/b.jpg", line=2)]


def test_csv_without_bom_and_crlf_line_ends(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "users.csv",
        "user_id,avatar_image_url\r\nalice,http://127.0.0.1/a.jpg\r\nbob,http://127.0.0.1/b.jpg\r\n",
    )
    entries = load_user_list(path)
    assert [(e.user_id, e.avatar_image_url, e.line) for e in entries] == [
        ("alice", "http://127.0.0.1/a.jpg", 2),
        ("bob", "http://127.0.0.1/b.jpg", 3),
    ]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_other_delimiters(tmp_path: Path, delimiter: str) -> None:
    """European Excel saves with ';', spreadsheets export TSV; the header decides the delimiter."""
    text = (
        f"user_id{delimiter}avatar_image_url\n"
        f"alice{delimiter}http://127.0.0.1/a.jpg?x=1,2\n"
        f"bob{delimiter}http://127.0.0.1/b.jpg\n"
    )
    entries = load_user_list(_write(tmp_path / "users.csv", text))
    assert entries == [
        UserEntry("alice", "http://127.0.0.1/a.jpg?x=1,2", line=2),
        UserEntry("bob", "http://127.0.0.1/b.jpg", line=3),
    ]


def test_csv_columns_in_any_order_with_extra_columns_and_header_case() -> None:
    text = (
        "Name, Avatar_Image_URL ,USER_ID\n"
        "Alice A.,http://127.0.0.1/a.jpg,alice\n"
        "Bob B., http://127.0.0.1/b.jpg ,bob\n"
    )
    entries = entries_from_csv(text)
    assert entries == [
        UserEntry("alice", "http://127.0.0.1/a.jpg", line=2),
        UserEntry("bob", "http://127.0.0.1/b.jpg", line=3),
    ]


def test_csv_line_numbers_after_blank_lines_and_multiline_cells() -> None:
    """Line numbers point at the physical line where each row starts, as an editor shows it."""
    text = (
        HEADER
        + "alice,http://127.0.0.1/a.jpg\n"  # line 2
        + "\n"  # line 3 (blank, skipped)
        + "   \n"  # line 4 (only spaces, skipped)
        + 'bob,"http://127.0.0.1/b.jpg"\n'  # line 5
        + '"carol\nsecond line",http://127.0.0.1/c.jpg\n'  # lines 6-7
        + "dave,http://127.0.0.1/d.jpg\n"  # line 8
    )
    entries = entries_from_csv(text)
    assert [(e.user_id, e.line) for e in entries] == [
        ("alice", 2),
        ("bob", 5),
        ("carol\nsecond line", 6),
        ("dave", 8),
    ]
    problems = check_entries(entries, Operation.REGISTER)
    # The multi-line user_id holds a control character (the newline) and is reported at its start.
    assert list(problems) == [2]
    assert problems[2].code == ErrorCode.INVALID_INPUT
    assert problems[2].message.startswith("line 6: ")


def test_csv_bad_rows_each_become_invalid_input_naming_their_line(tmp_path: Path) -> None:
    """Every bad row is reported with its own line; the good rows around them are untouched."""
    long_id = "u" * (MAX_USER_ID_LENGTH + 1)
    lines = [
        "user_id,avatar_image_url",  # 1
        "good1,http://127.0.0.1/1.jpg",  # 2
        ",http://127.0.0.1/empty-id.jpg",  # 3 empty user_id
        "no_url_cell",  # 4 missing url cell
        "no_host,http://",  # 5 malformed URL
        "ftp_user,ftp://x/y.jpg",  # 6 unsupported scheme
        "bad_port,http://host:99999/x.jpg",  # 7 port out of range
        f"{long_id},http://127.0.0.1/long.jpg",  # 8 overlong user_id
        "  spaced  ,http://127.0.0.1/spaced.jpg",  # 9 user_id with surrounding spaces
        "good2,http://127.0.0.1/2.jpg",  # 10
        "good1,http://127.0.0.1/1-again.jpg",  # 11 same user as line 2
        "good3,/photos/3.jpg",  # 12 local path: allowed by the check
    ]
    entries = load_user_list(_write(tmp_path / "users.csv", "\n".join(lines) + "\n"))
    assert [e.line for e in entries] == list(range(2, 13))

    problems = check_entries(entries, Operation.REGISTER)
    by_line = {entries[i].line: err for i, err in problems.items()}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 11]
    for line, err in by_line.items():
        assert isinstance(err, ItemError)
        assert err.code == ErrorCode.INVALID_INPUT
        assert err.message.startswith(f"line {line}: "), err.message

    assert "empty" in by_line[3].message
    assert "avatar_image_url is empty" in by_line[4].message
    assert "no host" in by_line[5].message
    assert "'ftp'" in by_line[6].message
    assert "malformed URL" in by_line[7].message
    assert f"{MAX_USER_ID_LENGTH + 1} characters" in by_line[8].message
    assert "leading/trailing spaces" in by_line[9].message
    assert "appears twice" in by_line[11].message
    assert "first at line 2" in by_line[11].message

    good = [e for i, e in enumerate(entries) if i not in problems]
    assert [(e.user_id, e.line) for e in good] == [("good1", 2), ("good2", 10), ("good3", 12)]
    assert good[0].avatar_image_url == "http://127.0.0.1/1.jpg"


def test_csv_user_id_of_exactly_the_maximum_length_is_accepted() -> None:
    entry = UserEntry("u" * MAX_USER_ID_LENGTH, "http://127.0.0.1/x.jpg", line=2)
    assert check_entry(entry, Operation.REGISTER) is None


def test_duplicate_after_an_invalid_first_row_is_not_a_duplicate() -> None:
    """A row that failed its own check does not claim the user_id, so the later row stands."""
    entries = [
        UserEntry("alice", "ftp://x/a.jpg", line=2),
        UserEntry("alice", "http://127.0.0.1/a.jpg", line=3),
        UserEntry("alice", "http://127.0.0.1/a2.jpg", line=4),
    ]
    problems = check_entries(entries, Operation.REGISTER)
    assert sorted(problems) == [0, 2]
    assert "first at line 3" in problems[2].message


def test_csv_unclosed_quote_refuses_the_file_instead_of_swallowing_rows() -> None:
    """Lenient CSV parsing would merge every later row into one cell and drop those users."""
    text = HEADER + 'alice,"http://127.0.0.1/a.jpg\nbob,http://127.0.0.1/b.jpg\n'
    with pytest.raises(InputFileError, match="line 2"):
        entries_from_csv(text)


def test_csv_oversized_cell_is_an_input_file_error() -> None:
    """The csv module's field limit raises csv.Error; callers expect InputFileError."""
    text = HEADER + "alice,http://127.0.0.1/a.jpg\nbob,http://127.0.0.1/" + "x" * 200_000 + "\n"
    with pytest.raises(InputFileError, match="line 3"):
        entries_from_csv(text)


def test_csv_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no user_id column"):
        load_user_list(_write(tmp_path / "a.csv", "id,avatar_image_url\nx,http://127.0.0.1/x\n"))
    with pytest.raises(InputFileError, match="no avatar_image_url column"):
        load_user_list(_write(tmp_path / "b.csv", "user_id,url\nx,http://127.0.0.1/x\n"))
    with pytest.raises(InputFileError, match="empty"):
        load_user_list(_write(tmp_path / "c.csv", ""))


def test_csv_for_deletion_needs_only_user_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "del.csv", "user_id\nalice\nbob\n")
    entries = load_user_list(path, Operation.DELETE)
    assert [(e.user_id, e.line) for e in entries] == [("alice", 2), ("bob", 3)]
    assert check_entries(entries, Operation.DELETE) == {}
    with pytest.raises(InputFileError, match="avatar_image_url"):
        load_user_list(path, Operation.REGISTER)


def test_delete_check_ignores_urls_but_not_ids() -> None:
    entries = [UserEntry("alice", "", line=2), UserEntry(" bob", "", line=3)]
    problems = check_entries(entries, Operation.DELETE)
    assert list(problems) == [1]
    assert problems[1].message.startswith("line 3: ")


# --- JSON ----------------------------------------------------------------------------------------


def test_json_seed_register_body(tmp_path: Path) -> None:
    body = {
        "users": [
            {"user_id": "alice", "avatar_image_url": "http://127.0.0.1/a.jpg"},
            {"user_id": "bob", "avatar_image_url": "http://127.0.0.1/b.jpg"},
        ]
    }
    path = _write(tmp_path / "register.json", json.dumps(body, indent=2))
    entries = load_user_list(path)
    assert [(e.user_id, e.avatar_image_url) for e in entries] == [
        ("alice", "http://127.0.0.1/a.jpg"),
        ("bob", "http://127.0.0.1/b.jpg"),
    ]
    assert check_entries(entries, Operation.REGISTER) == {}


def test_json_seed_delete_body(tmp_path: Path) -> None:
    path = _write(tmp_path / "delete.json", '{"user_ids": ["alice", "bob", "alice"]}')
    entries = load_user_list(path, Operation.DELETE)
    assert [e.user_id for e in entries] == ["alice", "bob", "alice"]
    assert all(e.avatar_image_url == "" for e in entries)
    problems = check_entries(entries, Operation.DELETE)
    assert list(problems) == [2]
    assert "appears twice" in problems[2].message


def test_json_detected_by_content_without_json_suffix(tmp_path: Path) -> None:
    path = _write(tmp_path / "list.txt", '  [{"user_id": "a", "avatar_image_url": "/x.jpg"}]')
    assert load_user_list(path) == [UserEntry("a", "/x.jpg", line=1)]


def test_json_malformed_items_are_kept_as_invalid_rows() -> None:
    """Reading never drops a row: odd items become entries that the check rejects."""
    data = {
        "users": [
            {"user_id": "ok", "avatar_image_url": "http://127.0.0.1/ok.jpg"},
            {"avatar_image_url": "http://127.0.0.1/no-id.jpg"},
            42,
            {"user_id": "no_url"},
            {"user_id": 0, "avatar_image_url": "http://127.0.0.1/zero.jpg"},
            {"user_id": 7, "avatar_image_url": "http://127.0.0.1/seven.jpg"},
        ]
    }
    entries = entries_from_json(data, Operation.REGISTER)
    assert len(entries) == 6
    # A numeric id of 0 is a real id, not a missing one.
    assert entries[4].user_id == "0"
    assert entries[5].user_id == "7"
    problems = check_entries(entries, Operation.REGISTER)
    assert sorted(problems) == [1, 2, 3]
    assert all(p.code == ErrorCode.INVALID_INPUT for p in problems.values())
    assert "user_id is empty" in problems[1].message
    assert "avatar_image_url is empty" in problems[3].message


def test_json_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not valid JSON"):
        load_user_list(_write(tmp_path / "bad.json", '{"users": [{"user_id": "a",]}'))
    with pytest.raises(InputFileError, match="not valid JSON"):
        load_user_list(_write(tmp_path / "empty.json", ""))
    with pytest.raises(InputFileError, match='"users"'):
        load_user_list(_write(tmp_path / "other.json", '{"people": []}'))
    with pytest.raises(InputFileError, match="list"):
        load_user_list(_write(tmp_path / "scalar.json", '{"users": "alice"}'))


# --- files that cannot be read ---------------------------------------------------------------


def test_missing_file_is_an_input_file_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(InputFileError, match=r"Cannot read .*nope\.csv"):
        load_user_list(missing)


def test_unreadable_path_is_an_input_file_error(tmp_path: Path) -> None:
    """A path through a regular file fails even for root, unlike a chmod 000 file."""
    blocker = _write(tmp_path / "plain.txt", "x")
    with pytest.raises(InputFileError, match="Cannot read"):
        load_user_list(blocker / "users.csv")
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "gone.csv")
    with pytest.raises(InputFileError, match="Cannot read"):
        load_user_list(dangling)


def test_non_utf8_file_is_an_input_file_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "latin1.csv", HEADER + "j\u00fcrgen,http://127.0.0.1/j.jpg\n", "latin-1"
    )
    with pytest.raises(InputFileError, match="not UTF-8"):
        load_user_list(path)


# --- folders of photos ---------------------------------------------------------------------------


def test_folder_of_photos(tmp_path: Path, faces_dir: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "alice.jpg").symlink_to(faces_dir / "probes" / "obama.jpg")
    (folder / "bob.PNG").write_bytes((faces_dir / "edge" / "rgba_32bit.png").read_bytes())
    (folder / "carol smith.jpeg").symlink_to(faces_dir / "identities" / "biden" / "1.jpg")
    (folder / "notes.txt").write_text("not a photo")
    (folder / "manifest.csv").write_text(HEADER)
    (folder / "sub.jpg").mkdir()  # a folder with an image-like name is not a photo
    (folder / "noext").write_bytes(b"")

    entries = load_user_list(folder)
    assert [e.user_id for e in entries] == ["alice", "bob", "carol smith"]
    by_id = {e.user_id: e for e in entries}
    # Symlinks are resolved, so the entry points at the real file.
    assert Path(by_id["alice"].avatar_image_url) == (faces_dir / "probes" / "obama.jpg").resolve()
    assert Path(by_id["bob"].avatar_image_url) == (folder / "bob.PNG").resolve()
    assert all(Path(e.avatar_image_url).is_absolute() for e in entries)
    assert all(e.line is None for e in entries)
    assert entries == entries_from_folder(folder)
    assert check_entries(entries, Operation.REGISTER) == {}


def test_folder_with_same_stem_twice_flags_the_second(tmp_path: Path, faces_dir: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "alice.jpg").symlink_to(faces_dir / "probes" / "obama.jpg")
    (folder / "alice.png").symlink_to(faces_dir / "edge" / "rgba_32bit.png")
    entries = entries_from_folder(folder)
    problems = check_entries(entries, Operation.REGISTER)
    assert list(problems) == [1]
    assert problems[1].code == ErrorCode.INVALID_INPUT
    assert "appears twice" in problems[1].message
    assert not problems[1].message.startswith("line")


def test_empty_folder_gives_no_entries(tmp_path: Path) -> None:
    assert load_user_list(tmp_path) == []


def test_blank_lines_before_the_header_are_skipped_and_lines_still_count() -> None:
    entries = entries_from_csv("\n\nuser_id,avatar_image_url\nalice,http://127.0.0.1/a.jpg\n")
    assert [(e.user_id, e.line) for e in entries] == [("alice", 4)]
