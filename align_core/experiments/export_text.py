"""Reading an export's bytes and cells without guessing silently: encoding, delimiter, counts.

Exports come from spreadsheets and ad platforms in whatever their user's locale writes: UTF-8
with or without a byte-order mark, UTF-16 (Excel's "Unicode text"), Windows-1252/Latin-1,
semicolons with decimal commas. Each is either read exactly or refused with what to do; a
count is parsed as an integer (never through a float, which rounds above 2^53) and one that
a spreadsheet printed in E notation is refused, since its digits are gone.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Sequence

__all__ = [
    "DELIMITERS",
    "ExportDecodeError",
    "INT64_MAX",
    "decode_export_bytes",
    "looks_like_decimal_comma",
    "parse_count",
    "sniff_delimiter",
]

INT64_MAX = 2**63 - 1
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# bytes Windows-1252 leaves undefined: a file holding them is neither UTF-8 nor Windows-1252
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_WHOLE = re.compile(r"^[+]?\d+(?:\.0*)?$")
_E_NOTATION = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d{1,3}(?:\.\d{3})*,\d+$|^[+-]?\d+,\d{1,2}$")
SAVE_AS_UTF8 = "save the export as CSV UTF-8 (Excel: File > Save As > 'CSV UTF-8') and import it again"


class ExportDecodeError(ValueError):
    """An export whose text encoding cannot be told for sure."""


def decode_export_bytes(data: bytes, source: str) -> tuple[str, str]:
    """The file's text and the encoding it was read in (a byte-order mark wins, then UTF-8).

    Without a mark, NUL bytes in every other position mean UTF-16; text that is not UTF-8 is
    read as Windows-1252 (a superset of Latin-1's printable characters) unless it holds bytes
    that encoding leaves undefined or NULs, which are refused with "save as UTF-8".
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom) :], encoding, source), encoding
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) * 3 >= len(sample):
        odd_nuls, even_nuls = sample[1::2].count(0), sample[0::2].count(0)
        encoding = "utf-16-le" if odd_nuls > even_nuls else "utf-16-be"
        return _decode(data, encoding, source), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    if b"\x00" in data or _CP1252_UNDEFINED.search(data):
        raise ExportDecodeError(
            f"{source}: the file is not UTF-8 (byte {first_bad}: {data[first_bad : first_bad + 1]!r}) and not "
            f"Windows-1252/Latin-1 either; {SAVE_AS_UTF8}"
        )
    return data.decode("cp1252"), "cp1252"


def _decode(data: bytes, encoding: str, source: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ExportDecodeError(
            f"{source}: the file looks like {encoding} but byte {exc.start} does not decode; {SAVE_AS_UTF8}"
        ) from None


def sniff_delimiter(lines: Sequence[str]) -> str:
    """The delimiter of a header and its first rows: the candidate that splits every line into the
    same number (> 1) of fields, most fields first (csv.Sniffer's consistency rule, limited to
    the delimiters exports use, so a comma inside a decimal never wins over a semicolon)."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return ","
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = delimiter, fields
    if best_fields == 1:  # no consistent split (ragged rows): the one the header splits on most
        header = lines[0]
        best = max(DELIMITERS, key=lambda d: (len(next(csv.reader([header], delimiter=d))), d == ","))
    return best


def looks_like_decimal_comma(cells: Sequence[str]) -> bool:
    """Whether number cells are written with a decimal comma (``12,50``, ``1.234,5``)."""
    return any(_DECIMAL_COMMA.match(c.strip()) for c in cells)


def parse_count(text: str) -> tuple[int | None, str | None]:
    """A whole count exactly (no float on the way), or None and why it is not one.

    Accepts digits with an optional ``.0`` (how some tools print integers); refuses E notation
    (the digits were rounded away), fractions, negatives and counts beyond a 64-bit integer.
    """
    text = text.strip()
    if _E_NOTATION.match(text):
        return None, (
            f"{text!r} is in scientific notation: the exact count was lost when a spreadsheet or "
            "float parser touched the file; export the number as plain digits"
        )
    if not _WHOLE.match(text):
        if re.match(r"^-\s*\d", text):
            return None, f"{text!r} is negative"
        try:
            float(text)
        except ValueError:
            return None, f"{text!r} is not a number"
        return None, f"{text!r} must be a whole count"
    value = int(text.lstrip("+").split(".")[0])
    if value > INT64_MAX:
        return None, f"{text!r} is too large: counts must be below 2^63 ({INT64_MAX})"
    return value, None
