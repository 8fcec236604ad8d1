"""Reading tables from CSV, TSV and Parquet files (paths or uploaded file objects).

Everything a person can get wrong in a file is turned into a :class:`~recommender.errors.DataError`
that names the file, the lines and the fix (see ``shared/RELIABILITY.md`` cases 1-5 and 8).
CSV columns are read as text so that ids keep their exact spelling: ``00123`` and ``123``
stay different and ``NA`` is an id, not a missing value.

The returned frame's index holds the line number of each row in the file (header = line 1)
or, for Parquet, the 1-based row number; ``frame.attrs`` records the source name and which
of the two it is, so later validation can point at the right rows.
"""
from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import DataError, Problem, format_rows

logger = logging.getLogger(__name__)

Source = Union[str, os.PathLike, BinaryIO, bytes]

#: Largest file read by default (bytes). The app's upload limit is lower.
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Largest row count a Parquet file may claim in its metadata.
DEFAULT_MAX_ROWS = 50_000_000

_DELIMITERS = [",", "\t", ";", "|"]
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", ":": "colon"}
_MAGIC = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"MZ", "a Windows program (.exe)"),
    (b"\x7fELF", "a program (ELF binary)"),
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel/Word document (.xls/.doc)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
]


def source_name(source: Source, name: str | None = None) -> str:
    """A short, human name for a path or an uploaded file object."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", None) or "the uploaded file"


def delimiter_name(sep: str) -> str:
    return _DELIMITER_NAMES.get(sep, repr(sep))


def _read_bytes(source: Source, name: str, max_bytes: int) -> bytes:
    """Read the whole source, refusing anything larger than ``max_bytes`` before reading it."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataError(Problem(f"file not found: {path}", file=name, fix="Check the path."))
        size = path.stat().st_size
        _check_size(size, name, max_bytes)
        data = path.read_bytes()
    else:
        size = getattr(source, "size", None)
        if size is None and hasattr(source, "seek") and hasattr(source, "tell"):
            position = source.tell()
            source.seek(0, os.SEEK_END)
            size = source.tell() - position
            source.seek(position)
        if size is not None:
            _check_size(size, name, max_bytes)
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read(max_bytes + 1)
        if isinstance(data, str):
            data = data.encode("utf-8")
    _check_size(len(data), name, max_bytes)
    return data


def _check_size(size: int, name: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise DataError(Problem(
            f"the file is {size / 1024**2:,.0f} MB, more than the limit of {max_bytes / 1024**2:,.0f} MB.",
            file=name, fix="Upload a sample of the data, or use the Python library or CLI for very large files."))


def _sniff_format(data: bytes, name: str) -> str:
    if data[:4] == b"PAR1":
        return "parquet"
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DataError(Problem(
                f"this is {what}, not a table.", file=name,
                fix="Upload a CSV, TSV or Parquet file (in Excel: File > Save As > CSV UTF-8)."))
    return "text"


def _decode_check(data: bytes, name: str, encoding: str | None) -> bytes:
    """Return UTF-8 bytes without a BOM, or raise an encoding message."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if encoding and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        try:
            return data.decode(encoding).encode("utf-8")
        except (UnicodeDecodeError, LookupError) as exc:
            raise DataError(Problem(f"cannot be read as {encoding}: {exc}.", file=name,
                                    fix="Choose the file's real encoding, or save it as UTF-8.")) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(Problem("the file is encoded as UTF-16, which is not supported.", file=name,
                                fix="Save it as 'CSV UTF-8' (in Excel: File > Save As > CSV UTF-8)."))
    head = data[:65536]
    if b"\x00" in head:
        utf16 = head[1::2].count(b"\x00") > len(head) // 4 or head[0::2].count(b"\x00") > len(head) // 4
        what = "looks like UTF-16 text" if utf16 else "contains binary data (NUL bytes)"
        raise DataError(Problem(f"the file {what}; it is not a UTF-8 text table.", file=name,
                                fix="Upload a CSV/TSV saved as UTF-8, or a Parquet file."))
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(Problem(
            f"is not valid UTF-8 (byte 0x{data[exc.start]:02X} on line {line}); "
            "it is probably Latin-1 / Windows-1252.",
            file=name, rows=(line,),
            fix="Save the file as UTF-8, or choose the encoding 'latin-1' when loading it.")) from None
    return data


def sniff_delimiter(header: str) -> str:
    """Guess the delimiter from the header line: the candidate that splits it most often."""
    counts = {}
    for d in _DELIMITERS:
        try:
            counts[d] = len(next(csv.reader([header], delimiter=d))) - 1
        except csv.Error:
            counts[d] = 0
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def suggest_delimiter(columns: list[str]) -> str | None:
    """If a table was read as one column that contains another delimiter, name it."""
    if len(columns) != 1:
        return None
    sep = sniff_delimiter(str(columns[0]))
    return None if sep == "," and "," not in str(columns[0]) else sep


def read_table(source: Source, *, name: str | None = None, sep: str | None = None,
               encoding: str | None = None, quoting: bool = True, header: list[str] | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int = DEFAULT_MAX_ROWS) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet table.

    Parameters
    ----------
    source : path, file object (e.g. a Streamlit upload) or bytes
    name : str, optional
        Name used in messages; defaults to the file name.
    sep : str, optional
        Single-character delimiter. Guessed from the header line (``.tsv`` means tab) when omitted.
    encoding : str, optional
        Text encoding, UTF-8 by default (a BOM is accepted). ``"latin-1"`` for old files.
    quoting : bool
        Whether ``"`` quotes fields (off for MovieLens, whose titles contain bare quotes).
    header : list of str, optional
        Column names for a file without a header line.
    max_bytes, max_rows : int
        Files larger than this, or Parquet files whose metadata claims more rows, are refused
        before they are read.

    Returns
    -------
    pandas.DataFrame
        Text columns (CSV) or the stored types (Parquet). The index is the line number
        (CSV, header = 1) or the 1-based row number (Parquet).

    Raises
    ------
    DataError
        For empty, binary, wrongly encoded, ragged, oversized files and duplicate column names.
    """
    name = source_name(source, name)
    data = _read_bytes(source, name, max_bytes)
    if not data.strip():
        raise DataError(Problem("no data rows in the file (it is empty).", file=name,
                                fix="Check that you picked the right file."))
    kind = "parquet" if str(name).lower().endswith((".parquet", ".pq")) else _sniff_format(data, name)
    if kind == "parquet" or data[:4] == b"PAR1":
        return _read_parquet(data, name, max_rows)
    data = _decode_check(data, name, encoding)
    return _read_csv(data, name, sep, quoting, header)


def _read_parquet(data: bytes, name: str, max_rows: int) -> pd.DataFrame:
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(Problem(f"is not a readable Parquet file ({exc}).", file=name,
                                fix="Re-export the file, or upload it as CSV.")) from None
    n_rows = parquet.metadata.num_rows
    if n_rows > max_rows:
        raise DataError(Problem(
            f"the file says it holds {n_rows:,} rows, more than the limit of {max_rows:,}.",
            file=name, fix="Upload a sample of the data."))
    columns = parquet.schema_arrow.names
    _check_columns(columns, name)
    if n_rows == 0:
        raise DataError(Problem("no data rows in the file (header only).", file=name))
    try:
        frame = parquet.read().to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(Problem(f"could not be read ({exc}).", file=name,
                                fix="The file may be truncated: export it again.")) from None
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    frame.attrs.update(source=name, row_label="row")
    return frame


def _check_columns(columns: list[str], name: str) -> None:
    seen: dict[str, int] = defaultdict(int)
    for column in columns:
        seen[column] += 1
    duplicated = [c for c, n in seen.items() if n > 1]
    if duplicated:
        listed = ", ".join(f"'{c}' ({seen[c]} times)" for c in duplicated)
        raise DataError(Problem(f"duplicate column names: {listed}.", file=name,
                                fix="Rename or remove the repeated columns so every name is unique."))


def _read_csv(data: bytes, name: str, sep: str | None, quoting: bool,
              header: list[str] | None) -> pd.DataFrame:
    first_line = data.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    if sep is None:
        sep = "\t" if name.lower().endswith((".tsv", ".tab")) else sniff_delimiter(first_line)
    if header is None:
        quote = '"' if quoting else "\x00"
        try:
            columns = [c.strip() for c in next(csv.reader([first_line], delimiter=sep, quotechar=quote))]
        except csv.Error as exc:
            raise DataError(Problem(f"the header line (line 1) cannot be read ({exc}).", file=name, rows=(1,),
                                    fix="Make line 1 a plain list of column names.")) from None
        columns = [c or f"unnamed_{i + 1}" for i, c in enumerate(columns)]
        _check_columns(columns, name)
        skip = 1
    else:
        columns, skip = list(header), 0

    invalid: list[tuple[int, int]] = []

    def on_invalid(row) -> str:
        invalid.append((row.number, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=columns, skip_rows=skip, use_threads=False,
                                           block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"' if quoting else False,
                                             newlines_in_values=quoting, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(Problem(f"could not be parsed as a {delimiter_name(sep)}-separated table ({exc}).",
                                file=name, fix="Check the delimiter and quoting.")) from None

    # pyarrow numbers records without blank lines; map record numbers to physical lines.
    record_lines = _nonblank_line_numbers(data)
    n_records = len(table) + len(invalid) + (1 if header is None else 0)
    if len(record_lines) != n_records:  # quoted line breaks: fall back to record numbers
        record_lines = np.arange(1, n_records + 1, dtype=np.int64)

    def line_of(record_number: int) -> int:
        index = record_number - 1
        return int(record_lines[index]) if 0 <= index < len(record_lines) else record_number

    if invalid:
        by_count: dict[int, list[int]] = defaultdict(list)
        for number, count in invalid:
            by_count[count].append(line_of(number))
        parts = [f"{format_rows(rows)} {'has' if len(rows) == 1 else 'have'} {count} "
                 f"field{'s' if count != 1 else ''}" for count, rows in sorted(by_count.items())]
        raise DataError(Problem(
            f"rows with the wrong number of fields: {'; '.join(parts)}, but the header has "
            f"{len(columns)}. Short rows are not padded.",
            file=name, rows=tuple(sorted(line_of(n) for n, _ in invalid))[:10], n_rows=len(invalid),
            fix="Make every line have one value per column (quote values that contain the delimiter).",
        ))
    frame = table.to_pandas()
    if len(frame) == 0:
        raise DataError(Problem("no data rows in the file (header only).", file=name,
                                fix="Check that you picked the right file."))
    numbers = record_lines[1:] if header is None else record_lines
    frame.index = pd.Index(numbers[: len(frame)], name="line")
    frame.attrs.update(source=name, row_label="line", delimiter=sep)
    return frame


def _nonblank_line_numbers(data: bytes) -> np.ndarray:
    """1-based numbers of the lines that hold something (vectorised over the raw bytes)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buffer)]))
    lengths = ends - starts
    has_cr = np.zeros(len(starts), dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = buffer[ends[nonempty] - 1] == 13
    lengths = lengths - has_cr
    return (np.flatnonzero(lengths > 0) + 1).astype(np.int64)
