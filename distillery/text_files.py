"""Reading local text data files: UTF-8 decoding that names the line of a bad byte (whole, or one line at a time
for streamed files), and the line where a JSON or JSON-lines file goes wrong."""
from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Iterable, Iterator, Union

from distillery.errors import DataError

BOM = codecs.BOM_UTF8


def _utf16(raw: bytes) -> str:
    """A hint for a file that starts with a UTF-16 byte-order mark (Excel's "Unicode text")."""
    return " (it starts with a UTF-16 byte-order mark: save it as UTF-8)" \
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else ""


def decode(path: Path, errors: str) -> str:
    raw = path.read_bytes()
    if errors == "strict" and _utf16(raw):
        raise DataError(f"{path}: not UTF-8{_utf16(raw)}")
    bom = len(BOM) if raw.startswith(BOM) else 0  # a byte-order mark (Excel, Notepad) is not part of the data
    try:
        return raw[bom:].decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        start = bom + exc.start
        line = raw[:start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte {raw[start]:#04x} at offset {start}); "
            "re-encode the file as UTF-8 or set data.encoding_errors: replace"
        ) from None


class DecodedLines:
    """A text file object over a binary file, decoded one line at a time, that knows its line number: a
    byte that is not UTF-8 raises the same ``DataError`` as :func:`decode`, naming the line. (A newline
    byte never occurs inside a UTF-8 sequence, so splitting at it first is safe.)"""

    def __init__(self, handle, path: Path, errors: str):
        self.handle, self.path, self.errors = handle, path, errors
        self.line, self.offset = 0, 0

    def readline(self, size: int = -1) -> str:
        raw = self.handle.readline()
        if not raw:
            return ""
        self.line += 1
        start = len(BOM) if self.line == 1 and raw.startswith(BOM) else 0
        if self.line == 1 and _utf16(raw):
            raise DataError(f"{self.path}: not UTF-8{_utf16(raw)}")
        try:
            text = raw[start:].decode("utf-8", errors=self.errors)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self.path}: line {self.line} is not valid UTF-8 (byte {raw[start + exc.start]:#04x} at offset "
                f"{self.offset + start + exc.start}); re-encode the file as UTF-8 or set data.encoding_errors: replace"
            ) from None
        self.offset += len(raw)
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


def json_line(number: int, line: str) -> Union[dict, str]:
    """The object on line ``number`` of a JSON-lines file, or what is wrong with it, naming the line."""
    try:
        value = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        return f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
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
                return f"line {exc.lineno} is not valid JSON ({exc.msg} at column {exc.colno})"
            return None
        handle.seek(0)
        for number, line in enumerate(DecodedLines(handle, path, errors), 1):
            problem = json_line(number, line) if line.strip() else None
            if isinstance(problem, str):
                return problem
    return None
