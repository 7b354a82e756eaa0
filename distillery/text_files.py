"""Reading local text data files: UTF-8 decoding that names the line of a bad byte (whole, or one line at a time
for streamed files), the line where a JSON or JSON-lines file goes wrong, and the CSV/TSV checks: quoting (raw
TSV, a stray quote that joins lines), the header, and each row's number as a spreadsheet shows it."""
from __future__ import annotations

import codecs
import csv
import json
from pathlib import Path
from typing import Iterable, Iterator, Union

import pandas as pd

from distillery.errors import DataError
from distillery.file_hints import REPLACEMENT, not_text_hint, note_replaced, replaced_counts

BOM = codecs.BOM_UTF8


def decode(path: Path, errors: str, raw: Union[bytes, None] = None, note: bool = True) -> str:
    """The text of ``path`` (or of its bytes ``raw``, e.g. decompressed) read as UTF-8: ``errors`` ``strict`` or
    ``replace`` (data.encoding_errors); a byte that is not UTF-8 under ``strict`` is a ``DataError`` naming its
    line. ``note``: say what ``replace`` replaced (not for a bundled corpus, which the user cannot re-encode)."""
    raw = path.read_bytes() if raw is None else raw
    end = raw.find(b"\n", 0, 8192)
    hint = not_text_hint(raw[:end if end >= 0 else 8192])  # the first line, as a streamed read sees it
    if hint:  # with errors=replace too: UTF-16 read as UTF-8 is NUL bytes between letters, not text
        raise DataError(f"{path}: not UTF-8{hint}")
    bom = len(BOM) if raw.startswith(BOM) else 0  # a byte-order mark (Excel, Notepad) is not part of the data
    try:
        text = raw[bom:].decode("utf-8", errors=errors)
        if errors == "replace" and note and REPLACEMENT in text:
            note_replaced(path, *replaced_counts(text.split("\n"), raw[bom:].split(b"\n")))
        return text
    except UnicodeDecodeError as exc:
        start = bom + exc.start
        line = raw[:start].count(b"\n") + 1
        raise not_utf8(path, line, raw[start], start) from None


def not_utf8(path: Path, line: int, byte: int, offset: int) -> DataError:
    """The one error for a byte of a data file that is not UTF-8, wherever it is found (``prepare``, the params
    check)."""
    return DataError(f"{path}: line {line} is not valid UTF-8 (byte {byte:#04x} at offset {offset}); re-encode the "
                     "file as UTF-8 or set data.encoding_errors: replace")


class DecodedLines:
    """A text file object over a binary file, decoded one line at a time, that knows its line number: a
    byte that is not UTF-8 raises the same ``DataError`` as :func:`decode`, naming the line. (A newline
    byte never occurs inside a UTF-8 sequence, so splitting at it first is safe.)"""

    def __init__(self, handle, path: Path, errors: str):
        self.handle, self.path, self.errors = handle, path, errors
        self.line, self.offset = 0, 0
        self.replaced, self.replaced_lines = 0, 0  # with errors="replace": byte sequences replaced, on how many lines

    def readline(self, size: int = -1) -> str:
        raw = self.handle.readline()
        if not raw:
            return ""
        self.line += 1
        start = len(BOM) if self.line == 1 and raw.startswith(BOM) else 0
        hint = not_text_hint(raw) if self.line == 1 else ""
        if hint:
            raise DataError(f"{self.path}: not UTF-8{hint}")
        try:
            text = raw[start:].decode("utf-8", errors=self.errors)
        except UnicodeDecodeError as exc:
            raise not_utf8(self.path, self.line, raw[start + exc.start], self.offset + start + exc.start) from None
        self.offset += len(raw)
        if self.errors == "replace" and REPLACEMENT in text:
            replaced, lines = replaced_counts([text], [raw[start:]])
            self.replaced, self.replaced_lines = self.replaced + replaced, self.replaced_lines + lines
        return text

    def read(self, size: int = -1) -> str:
        parts, length = [], 0
        while size is None or size < 0 or length < size:
            line = self.readline()
            if not line:
                break
            parts.append(line)
            length += len(line)
        return "".join(parts)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def json_problem(exc: json.JSONDecodeError) -> str:
    """The syntax error and its column: "Expecting value at column 25", "Unterminated string starting at column 9"
    (that message already ends in "at")."""
    return f"{exc.msg}{'' if exc.msg.endswith(' at') else ' at'} column {exc.colno}"


def json_line(number: int, line: str) -> Union[dict, str]:
    """The object on line ``number`` of a JSON-lines file, or what is wrong with it, naming the line."""
    try:
        value = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        return f"line {number} is not valid JSON ({json_problem(exc)})"
    if not isinstance(value, dict):
        return (f"line {number} is a JSON {type(value).__name__.replace('dict', 'object')}, not an object "
                "of columns ({\"column\": value, ...})")
    return value


def json_objects(lines: Iterable[str], where: str) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of JSON lines; the first bad line raises a
    ``DataError`` that starts with ``where`` and names the line."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            value = json_line(number, line)
            if isinstance(value, str):
                raise DataError(f"{where}: {value}")
            yield number, value


def bad_json_line(path: Path, errors: str) -> Union[str, None]:
    """Where a JSON or JSON-lines file that pandas could not read goes wrong, by line: the first line that is not
    valid JSON or not an object of columns (JSON lines), or the line of a JSON document's syntax error. None
    when every line is a valid object (pandas refused the file for another reason)."""
    with open(path, "rb") as handle:
        lines = DecodedLines(handle, path, errors)
        first = ""
        for line in lines:
            if line.strip():
                first = line.lstrip()
                break
        if first.startswith("["):  # one JSON document: its own syntax error names the line
            handle.seek(0)
            try:
                json.loads(DecodedLines(handle, path, errors).read())
            except json.JSONDecodeError as exc:
                return f"line {exc.lineno} is not valid JSON ({json_problem(exc)})"
            return None
        handle.seek(0)
        for number, line in enumerate(DecodedLines(handle, path, errors), 1):
            problem = json_line(number, line) if line.strip() else None
            if isinstance(problem, str):
                return problem
    return None


def record_lines(path: Path, kind: str, raw: Union[bool, None] = None) -> Union[list[int], None]:
    """The row number of each non-empty data record of a CSV/TSV file as a spreadsheet shows it, less the header:
    a quoted field over several lines is one row, a blank line (which pandas skips) is a row too.

    A CSV field that opens with a quote and goes on after its closing quote (``"Best. Movie. Ever,a`` ... ``he said
    5" screen,b`` lines later) is a DataError naming both lines: pandas joins every line between into one row,
    silently. None when the file does not read as strict CSV in another way (pandas read it; keep its count).
    ``raw``: whether a TSV is written without quoting (``is_raw_tsv``), when the caller has scanned it already."""
    options = {"delimiter": "\t" if kind == "tsv" else ","}
    if kind == "tsv":
        if raw is None:
            with open(path, encoding="utf-8-sig", errors="replace", newline="") as scan:
                raw = is_raw_tsv(scan)
        if raw:
            options["quoting"] = csv.QUOTE_NONE
    limit = csv.field_size_limit()
    csv.field_size_limit(2 ** 31 - 1)  # a long text is a field, not an error
    starts, start = [], 1
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            reader = csv.reader(handle, strict=True, **options)
            try:
                header, number = False, 0
                for record in reader:
                    if header:
                        number += 1  # a blank line is a row too, as a spreadsheet shows the file
                        if record:
                            starts.append(number)
                    header = header or bool(record)
                    start = reader.line_num + 1
            except csv.Error as exc:
                if kind == "csv" and "expected after" in str(exc):
                    raise DataError(f"{path}: line {start}: a quote (\") at the start of a field opened a quoted field "
                                    f"that ran to line {reader.line_num} and joined those lines into one row; write such "
                                    "a quote as two quotes (\"\") or quote the whole field") from None
                if "unexpected end of data" in str(exc):
                    raise DataError(f"{path}: line {start}: a quote (\") opens a field that no quote closes, to the end "
                                    "of the file; write such a quote as two quotes (\"\") or quote the whole field") from None
                return None
    finally:
        csv.field_size_limit(limit)
    return starts


def table_options(kind: str, raw: bool = False) -> dict:
    """pandas options for a CSV or TSV file: every value a string, only an empty field missing; ``raw``: a TSV
    without quoting (a quote is a character of the text)."""
    options = dict(sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False, na_values=[""])
    return dict(options, quoting=csv.QUOTE_NONE) if raw else options


def _text_after_closing_quote(field: str) -> bool:
    """Does ``field``, which opens with a quote, go on after the quote that closes it (``"we lost" he said``)?
    CSV quoting would drop both quotes and join the rest; a quoted field ends at its closing quote."""
    i = 1
    while i < len(field):
        if field[i] == '"':
            if field[i + 1:i + 2] == '"':  # an escaped quote inside the field
                i += 2
                continue
            return i < len(field) - 1
        i += 1
    return False  # not closed on this line: a quoted field over several lines, or an unclosed quote


def is_raw_tsv(lines) -> bool:
    """A TSV written without quoting (GLUE's files, a spreadsheet's export): some field opens with a quote
    that closes before the field ends. Read with CSV quoting, such a text would lose its quotes."""
    for line in lines:
        if '"' in line and any(field.startswith('"') and _text_after_closing_quote(field)
                               for field in line.rstrip("\r\n").split("\t")):
            return True
    return False


def check_header_fields(frame: pd.DataFrame, path: Path, kind: str) -> None:
    """pandas takes a first data row with more fields than the header as a sign that the first columns are an
    index: every row then shifts one column (a text becomes the index, its label the text). A row with more fields
    further down is pandas' own error; this one is named the same way."""
    if isinstance(frame.index, pd.RangeIndex):
        return
    fields, header = frame.index.nlevels + len(frame.columns), len(frame.columns)
    separator = "tab" if kind == "tsv" else "comma"
    if fields == header + 1 and len(frame) and frame[frame.columns[-1]].isna().all() and _every_line_ends_with(
            path, "\t" if kind == "tsv" else ","):  # shifted, the extra field empty on every line: not a quote missing
        raise DataError(f"{path}: every row has {fields} fields but the header has {header}: each line ends with a "
                        f"{separator} (an empty last field); remove it, or name that column in the header")
    raise DataError(f"{path}: line 2 has {fields} fields but the header has {header}: a text holding a {separator} "
                    f"must be quoted (\"...\")")


def _every_line_ends_with(path: Path, separator: str) -> bool:
    """Whether every record of ``path`` after its header has one field more than the header, and that one empty."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        records = csv.reader(handle, delimiter=separator)
        header = len(next(records, []))
        rows = [row for row in records if any(field.strip() for field in row)]
    return bool(rows) and all(len(row) == header + 1 and row[-1] == "" for row in rows)


def check_tsv_rows(frame: pd.DataFrame, path: Path) -> None:
    """A TSV field holds a tab only inside quotes. A text that merely starts with a quote opens such a field,
    which runs to the next quote, lines later: those lines would become one row, silently. Such a field holds a
    tab and a line break; one quoted whole on its line (pandas writes a text with a tab so) is read as written."""
    for column in frame.columns:
        values = frame[column].astype(str)
        joined = values[values.str.contains("\t", regex=False) & values.str.contains("[\r\n]") & frame[column].notna()]
        if len(joined):
            row = int(joined.index[0]) + 1
            raise DataError(f"{path}: row {row} (column {column!r}) holds a tab: a quote (\") at the start of a "
                            "field opened a quoted field that joined the lines up to the next quote into one row; "
                            "write such a quote as two quotes (\"\") or quote the whole field")
