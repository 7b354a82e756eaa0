"""What a data file that cannot be read as asked seems to be, for its one-line error: a binary file under a text
suffix (Parquet, a workbook, gzip), UTF-16, a column spelt apart from params.yaml's (case, spacing, Unicode form,
another separator, Excel's ``sep=`` line); and what ``data.encoding_errors: replace`` changed."""
from __future__ import annotations

import codecs
import csv
import json
import sys
import unicodedata
from pathlib import Path

from distillery.errors import DataError

REPLACEMENT = "\ufffd"  # what data.encoding_errors: replace puts for a byte sequence that is not UTF-8

NOT_TEXT = ((b"PAR1", "it is a Parquet file: give it the suffix .parquet"),
            (b"PK\x03\x04", "it is a ZIP archive, as an Excel workbook (.xlsx) is: save the sheet as CSV UTF-8"),
            (b"\x1f\x8b", "it is gzip-compressed: decompress it first (gunzip)"),
            (b"\xd0\xcf\x11\xe0", "it is an old Excel workbook (.xls): save the sheet as CSV UTF-8"))


def _binary(head: bytes, cut: bool) -> bool:
    """Whether ``head`` (a file's first line, at most 4 KB of it: ``cut`` when there was more) is no UTF-8 text: a NUL
    byte, or a byte that is not UTF-8 (in a cut line, before its last few: a character the cut may have split)."""
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4 or not cut
    return False


def not_text_hint(first_line: bytes) -> str:
    """A hint for a data file that is not UTF-8 text whatever its errors setting, from its first line: UTF-16
    (Excel's "Unicode text", by its byte-order mark), or a binary file by its first bytes (Parquet, a workbook,
    gzip: only when the line is not text, so a CSV whose first column is "PAR1" is a CSV) or its NUL bytes."""
    if first_line.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return " (it starts with a UTF-16 byte-order mark: save it as UTF-8)"
    head = first_line[:4096]
    if not _binary(head, len(first_line) > len(head)):
        return ""
    for magic, hint in NOT_TEXT:
        if head.startswith(magic):
            return f" ({hint})"
    # a stray NUL in a text is that row's problem (rejected); many are a binary file's
    return " (a binary file, not text: a tenth of its first bytes are NUL)" if head.count(0) * 10 > len(head) else ""


def replaced_counts(texts: list[str], raws: list[bytes]) -> tuple[int, int]:
    """(byte sequences replaced, lines with any) over lines decoded with errors="replace" and their bytes: a
    U+FFFD the file itself holds is not counted."""
    replaced = lines = 0
    for text, raw in zip(texts, raws):
        here = text.count(REPLACEMENT) - raw.count(REPLACEMENT.encode())
        replaced, lines = replaced + max(here, 0), lines + (here > 0)
    return replaced, lines


def note_replaced(path: Path, replaced: int, lines: int) -> None:
    """Say how much of ``path`` data.encoding_errors: replace changed: a Windows-1252 export loses every accent."""
    if replaced > 0:
        print(f"prepare: note: {path}: {replaced:,} byte sequence(s) that are not UTF-8, on {lines:,} line(s), became "
              f"{REPLACEMENT} (data.encoding_errors: replace); a file in another encoding (Windows-1252, Latin-1) "
              "keeps its letters when re-encoded as UTF-8 first (iconv -f cp1252 -t utf-8)", file=sys.stderr,
              flush=True)


SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def column_hint(column: str, columns: list) -> str:
    """A hint for a configured column the file lacks: a column differing only in case or spacing, or spelt with other
    Unicode code points (a macOS export writes accents decomposed, NFD), which look alike in an error line; a header
    read as one column (another separator) or Excel's ``sep=`` line read as the header."""
    names = [str(name) for name in columns]
    if names and names[0].lower().startswith("sep="):
        return ("the first line (sep=...) is Excel's separator line, not a header: remove it and save the file with "
                "commas as .csv or with tabs as .tsv")
    found = [word for mark, word in SEPARATORS.items() if len(names) == 1 and mark in names[0]]
    if found:
        return (f"the header was read as one column: its fields look separated by {found[0]}; save the file with "
                "commas as .csv or with tabs as .tsv")

    def plain(name: str, form: str = "") -> str:
        return " ".join((unicodedata.normalize(form, name) if form else name).casefold().split())

    for name in names:
        if plain(name) == plain(column):
            return f"did you mean {name!r}? column names are matched exactly"
    for name in names:
        if plain(name, "NFC") == plain(column, "NFC"):
            return (f"did you mean {name!r}? It looks alike but is spelt with other Unicode code points (accents as "
                    "separate marks, as macOS exports write them): copy the name from the file, or save its header "
                    "in NFC form")
    return ""


def first_character(path: Path) -> str:
    """The first character of ``path`` that is not white space (or a byte order mark), as bytes read."""
    with open(path, "rb") as handle:
        return handle.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")[:1]


def parsed_json(text: str):
    """``text`` as one JSON document, or None where it is not one."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def json_array(path: Path) -> bool:
    """Whether ``path`` holds one JSON array (a .json file's content under a .jsonl name)."""
    return isinstance(parsed_json(path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")), list)


def too_many_fields(path: Path, kind: str, raw: bool, expected: int, record: int, saw: int) -> DataError:
    """pandas' "Expected 2 fields in line 7, saw 3" as one line naming the row as prepare numbers rows (from 1 after
    the header; pandas counts records, the header as the first). When pandas expected a field more than the header
    has, it had taken the first data line's extra field for an index column: that line is the first problem."""
    separator = "\t" if kind == "tsv" else ","
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        header = len(next(csv.reader(handle, delimiter=separator), []))
    what = "tab" if kind == "tsv" else "comma"
    if expected != header:
        return DataError(f"{path}: line 2 has {expected} fields but the header has {header}: a text holding a {what} "
                         f"must be quoted (\"...\")")
    if raw:
        return DataError(f"{path}: row {record - 1} has {saw} fields but the header has {header}: this TSV is read "
                         "without quoting (a text of it opens with a quote that closes before the field ends), so a "
                         "text cannot hold a tab; replace the tabs in its texts")
    return DataError(f"{path}: row {record - 1} has {saw} fields but the header has {header}: a text holding a {what} "
                     f"must be quoted (\"...\")")
