"""Text inputs as other tools write them, and matching the ids they hold: one home for both.

Spreadsheets and other operating systems write the same ids differently, and every reader of
user-supplied text in gis (interactions and items CSVs, users files, item and user ids typed on
the command line, image file names) goes through this module:

* **Encodings** (``read_text``): a byte-order mark picks UTF-8, UTF-16 or UTF-32 (Excel's "CSV
  UTF-8" starts with one, its "Unicode text" is UTF-16); text without one is UTF-8, or, when it
  is not valid UTF-8, Windows-1252 (Excel's plain "CSV (Comma delimited)") with a
  ``DataWarning`` saying so.
* **Line ends and separators** (``read_table``, ``read_id_list``): LF, CRLF (Windows) and CR
  (classic Mac) all end a line; the separator is the one of ``,`` ``;`` (Excel in locales
  with a decimal comma) and tab (TSV) that the header line uses most. Header names are
  compared case-insensitively, with spaces and hyphens read as ``_`` ("User ID" = ``user_id``).
* **Ids** (``normalize_id``): Unicode NFC (macOS writes file names decomposed, NFD: ``e`` +
  U+0301, where typed text is composed, NFC: U+00E9), surrounding white space, byte-order marks
  and zero-width characters removed.
* **Matching** (``IdIndex``): an id matches a known id when both are equal after
  ``normalize_id``; failing that, numeric ids match by value (a spreadsheet turned "00123"
  into 123, or pandas wrote "123.0"), and then ids match ignoring case (file names on
  Windows and macOS); a fallback that would match two known ids matches none.

Every failure is a ``GisUsageError`` naming the file and what to do.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import GisUsageError

#: characters stripped from both ends of every id besides white space: BOM, zero-width space,
#: zero-width (non-)joiners, word joiner
_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_SEPARATORS = (",", ";", "\t")
_NUMERIC = re.compile(r"[0-9]+(?:\.0*)?")


class DataWarning(UserWarning):
    """Something in user-supplied data was skipped or read by a guess (broken images, dangling
    interactions, text that is not UTF-8)."""


def normalize_id(text: object) -> str:
    """An id as gis compares it: ``str(text)`` in Unicode NFC, without surrounding white space,
    byte-order marks or zero-width characters."""
    return unicodedata.normalize("NFC", str(text)).strip().strip(_INVISIBLE).strip()


def _numeric_key(key: str) -> str | None:
    """"00123", "123" and "123.0" -> "123"; None for ids that are not plain numbers."""
    if not _NUMERIC.fullmatch(key):
        return None
    return key.split(".")[0].lstrip("0") or "0"


def read_text(path: str | Path, *, what: str = "text file") -> str:
    """The decoded text of ``path`` (module docstring: byte-order marks, UTF-8, Windows-1252).

    Raises ``GisUsageError`` when the file is missing, unreadable or binary (NUL bytes in
    text without a UTF-16/32 byte-order mark)."""
    p = Path(path)
    if not p.is_file():
        raise GisUsageError(f"{what} not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise GisUsageError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise GisUsageError(f"{what} {p} starts with a {codec.upper()} byte-order mark "
                                    f"but is not {codec.upper()} text: {exc.reason} at byte "
                                    f"{exc.start}") from None
    if b"\x00" in data:
        raise GisUsageError(f"{what} {p} is not text (it holds NUL bytes): save it as CSV "
                            "UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        first = exc.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise GisUsageError(f"{what} {p} is neither UTF-8 nor Windows-1252 text (byte "
                            f"0x{data[first]:02x} at offset {first}): save it as CSV UTF-8"
                            ) from None
    warnings.warn(f"{what} {p} is not UTF-8 (byte 0x{data[first]:02x} at offset {first}); read "
                  "it as Windows-1252, as Excel's 'CSV (Comma delimited)' writes it; if names "
                  "look wrong, save it as 'CSV UTF-8'", DataWarning, stacklevel=2)
    return text


def _separator(header: str) -> str:
    counts = [header.count(s) for s in _SEPARATORS]
    return _SEPARATORS[counts.index(max(counts))] if max(counts) else ","


def _column(name: str | None) -> str:
    return re.sub(r"[\s-]+", "_", normalize_id(name or "").lower())


def read_table(path: str | Path, required: Sequence[str], *, what: str = "CSV file"
               ) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV/TSV file with a header line, as (line number, {column: value}).

    Columns are named as ``_column`` reads the header (lower case, ``_`` for spaces); values
    are ``normalize_id``-ed; rows whose cells are all empty are skipped. ``required`` columns
    must be in the header, else ``GisUsageError`` naming the missing and the found ones.
    """
    text = read_text(path, what=what)
    first = next((line for line in text.splitlines() if line.strip()), "")
    # strict: a quote left open (or text right after a closing quote) is an error naming the
    # line, not a cell that swallows the rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_separator(first), strict=True)
    try:
        header: list[str] | None = None
        rows: list[tuple[int, dict[str, str]]] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [_column(c) for c in cells]
                missing = [c for c in required if c not in header]
                if missing:
                    raise GisUsageError(
                        f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                        f"{', '.join(required)} (found: {', '.join(header)})")
                continue
            values = {h: normalize_id(v) for h, v in zip(header, cells, strict=False) if h}
            rows.append((reader.line_num, {h: values.get(h, "") for h in header if h}))
    except csv.Error as exc:
        raise GisUsageError(f"cannot read {what} {path}, line {reader.line_num}: {exc} (a "
                            "quote left open?)") from None
    if header is None:
        raise GisUsageError(f"{path} is empty: the header must name {', '.join(required)}")
    return rows


def read_id_list(path: str | Path, *, header_names: Iterable[str] = (),
                 what: str = "ids file") -> list[str]:
    """Ids from a file of one id per line, or the first column of a CSV/TSV (blank lines and
    lines starting with ``#`` skipped; a first line whose first cell is one of
    ``header_names``, compared as column names, is a header and skipped). Ids are
    ``normalize_id``-ed, in file order."""
    text = read_text(path, what=what)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    sep = _separator(lines[0]) if lines else ","
    names = {_column(h) for h in header_names}
    ids: list[str] = []
    first_line = True
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    try:
        for cells in reader:
            first = normalize_id(cells[0]) if cells else ""
            if not first or first.startswith("#"):
                continue
            if not (first_line and _column(first) in names):  # only line 1 can be a header
                ids.append(first)
            first_line = False
    except csv.Error as exc:
        raise GisUsageError(f"cannot read {what} {path}, line {reader.line_num}: {exc} (a "
                            "quote left open?)") from None
    return ids


class IdIndex:
    """Position of each of ``ids`` (unique after ``normalize_id``), found by the tolerant
    match of the module docstring. ``ids`` keep their order; ``ids[i]`` is the canonical
    spelling (``normalize_id``) of position i.

    Raises ``GisUsageError`` when two of ``ids`` are equal after ``normalize_id`` (for
    example the NFC and NFD spellings of one name); ``what`` names them in that message.
    """

    def __init__(self, ids: Iterable[object], *, what: str = "ids"):
        self.ids = [normalize_id(i) for i in ids]
        self._exact: dict[str, int] = {}
        for k, key in enumerate(self.ids):
            if key in self._exact:
                raise GisUsageError(f"two {what} are the same after Unicode normalisation: "
                                    f"{key!r} (positions {self._exact[key]} and {k})")
            self._exact[key] = k
        self._numeric = self._fallback(_numeric_key)
        self._folded = self._fallback(str.casefold)

    def _fallback(self, keyfn) -> dict[str, int | None]:
        table: dict[str, int | None] = {}
        for k, key in enumerate(self.ids):
            alt = keyfn(key)
            if alt is not None:
                table[alt] = None if alt in table else k  # None: ambiguous, matches nothing
        return table

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, key: object, *, fallback: bool = True) -> int | None:
        """Position of ``key``, or None when it matches no id (or two, by a fallback);
        ``fallback=False`` matches only ids equal after ``normalize_id``."""
        key = normalize_id(key)
        k = self._exact.get(key)
        if k is None and fallback:
            alt = _numeric_key(key)
            k = self._numeric.get(alt) if alt is not None else None
        if k is None and fallback:
            k = self._folded.get(key.casefold())
        return k

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None


def examples(values: Iterable[object], k: int = 3) -> str:
    """Up to ``k`` distinct values quoted, comma-separated, "..." when there are more."""
    seen: list[str] = []
    more = False
    for v in values:
        s = str(v)
        if s in seen:
            continue
        if len(seen) == k:
            more = True
            break
        seen.append(s)
    return ", ".join(repr(s) for s in seen) + (", ..." if more else "")


def mismatch(unmatched: Iterable[object], known: Iterable[object], known_what: str) -> str:
    """"e.g. '0', '1'; <known_what> look like '0000', '0001'": both sides of an id mismatch."""
    return f"e.g. {examples(unmatched)}; {known_what} look like {examples(known)}"
