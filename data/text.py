"""Text from bytes as editors write it: UTF-8 with or without a byte-order mark, and UTF-16 or
UTF-32 (Windows tools save 'Unicode' text so), told by their mark or, without one, by the zero
bytes of UTF-16. Anything else is refused with the place of the first bad byte."""

from __future__ import annotations

import codecs
from pathlib import Path

from data.errors import DatasetError

MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class NotText(ValueError):
    """Bytes that are not text in a known encoding; the message says what they are."""


class Binary(NotText):
    """Bytes with zeros that no text encoding explains."""


def encoding_of(data: bytes) -> str:
    """The encoding `data` is written in: a byte-order mark's, UTF-16 without a mark when
    every other byte is zero (ASCII text in UTF-16), else UTF-8."""
    for mark, encoding in MARKS:
        if data.startswith(mark):
            return encoding
    if b"\x00" in data and len(data) % 2 == 0:
        if not any(data[1::2]):
            return "utf-16-le"
        if not any(data[0::2]):
            return "utf-16-be"
    return "utf-8"


def decode_text(data: bytes) -> str:
    """The text of `data`; NotText for binary data or bytes that are not valid in its encoding."""
    encoding = encoding_of(data)
    if encoding == "utf-8" and b"\x00" in data:
        raise Binary("is binary, not text")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8":
            raise NotText(f"is not valid {encoding.upper()} text; save it as UTF-8") from None
        line = data[: exc.start].count(b"\n") + 1
        raise NotText(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    if "\x00" in text:
        raise Binary("is binary, not text")
    return text


def read_text(path: Path) -> str:
    """The text of a data file (see decode_text); DatasetError naming the file otherwise."""
    try:
        return decode_text(Path(path).read_bytes())
    except NotText as exc:
        raise DatasetError(f"{path} {exc}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
