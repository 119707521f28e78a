"""Decide how the bytes of a CSV file become text, from a sample of its start."""

from __future__ import annotations

import codecs

import charset_normalizer

from .errors import CsvProfileError

BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control bytes that never appear in text exports (tab, newlines, form feed and ESC are allowed).
CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
BINARY_CONTROL_RATIO = 0.01
# charset-normalizer often names a Latin code page (cp1250, mac_latin2, ...) for short
# Western European samples; those are almost always cp1252 exports, so only trust it
# when it points at a non-Latin script.
NON_LATIN_GUESSES = {
    "cp1251", "koi8_r", "koi8_u", "cp1253", "cp1255", "cp1256", "cp874", "shift_jis",
    "cp932", "euc_jp", "gb18030", "gb2312", "gbk", "big5", "euc_kr", "cp949",
}


def normalize_encoding(name: str) -> str:
    """Validate a user-given encoding name and return Python's canonical spelling."""
    try:
        return codecs.lookup(name.strip()).name
    except (LookupError, AttributeError):
        raise CsvProfileError(f"Unknown encoding {name!r}; try utf-8, utf-16 or cp1252.") from None


def detect_encoding(sample: bytes, complete: bool) -> str:
    """Guess the encoding of a file from its first bytes; raise if it is not text."""
    for bom, name in BOMS:
        if sample.startswith(bom):
            return name
    if b"\x00" in sample:
        return _bomless_utf16(sample)
    controls = sum(sample.count(b) for b in CONTROL_BYTES)
    if controls > BINARY_CONTROL_RATIO * len(sample):
        raise _binary_error()
    if _decodes(sample, "utf-8", complete):
        return "utf-8"
    best = charset_normalizer.from_bytes(sample).best()
    guess = codecs.lookup(best.encoding).name if best is not None else None
    if guess in NON_LATIN_GUESSES and _decodes(sample, guess, complete):
        return guess
    return "cp1252" if _decodes(sample, "cp1252", complete) else "latin-1"


def decode_sample(sample: bytes, encoding: str, complete: bool) -> str:
    """Decode the sample, tolerating a multi-byte character cut at its end."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        return decoder.decode(sample, final=complete)
    except UnicodeDecodeError:
        raise CsvProfileError(
            f"The file could not be decoded as {encoding}; choose another encoding."
        ) from None


def _decodes(sample: bytes, encoding: str, complete: bool) -> bool:
    """Tell whether the sample is valid in the encoding."""
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _bomless_utf16(sample: bytes) -> str:
    """Recognise UTF-16 without a byte-order mark by where its zero bytes fall."""
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) / 2
    if odd > 0.3 * half and even == 0:
        return "utf-16-le"
    if even > 0.3 * half and odd == 0:
        return "utf-16-be"
    raise _binary_error()


def _binary_error() -> CsvProfileError:
    """The message for files that are not text at all."""
    return CsvProfileError("The file is not a text CSV file (it contains binary data).")
