"""What encoding a feed or a page is really in, when its labels say otherwise.

Used by ``feeds`` (before feedparser decodes) and ``extract`` (pages). Three facts about the bytes beat
any label: NUL bytes where ASCII characters leave them are UTF-16 or UTF-32 (no ASCII-compatible
encoding puts NULs in text); bytes that decode as strict UTF-8 with non-ASCII in them are UTF-8 (legacy
8-bit Arabic almost never does by accident); and Arabic bytes labelled Latin-1 are Windows-1256 or
ISO-8859-6, whichever reads as more Arabic letters. A label Python knows but no document can be in
("undefined", "base64", "idna", "utf-7", ...) is no label at all.
"""

from __future__ import annotations

import codecs
import re

# Codecs that are text encodings to Python but decode anything into nonsense, or always fail.
_NOT_DOCUMENT_CODECS = frozenset({"idna", "punycode", "undefined", "utf-7", "unicode-escape", "raw-unicode-escape"})
# What servers write when they do not know: Arabic bytes often hide behind these.
LATIN_CODECS = frozenset({"iso8859-1", "cp1252", "iso8859-15", "ascii"})
WIDE_CODECS = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
_ARABIC_LETTER = re.compile(r"[\u0621-\u064A]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16's: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def web_codec(label: str | None) -> str | None:
    """Python's name for a charset label (``"Windows-1256"`` → ``"cp1256"``), or None when the label is
    unknown or names no encoding a document can be in."""
    if not label:
        return None
    label = label.strip().strip("\"'").strip()
    try:
        name = codecs.lookup(label).name
        b"".decode(name)  # LookupError for bytes-to-bytes codecs (base64, zlib, rot13)
    except (LookupError, UnicodeError, ValueError):
        return None
    return None if name in _NOT_DOCUMENT_CODECS else name


def bom_codec(content: bytes) -> str | None:
    for bom, name in _BOMS:
        if content.startswith(bom):
            return name
    return None


def sniff_wide(content: bytes) -> str | None:
    """``utf-16-le``/``-be`` or ``utf-32-le``/``-be`` when the bytes say so (a BOM, or the NUL bytes
    that ASCII characters - the markup - leave in those encodings), else None.

    Arabic letters leave no NUL in UTF-16 (U+0627 is 27 06), so a page can be mostly NUL-free; but all
    its NULs fall on one side of each character, where binary data scatters them.
    """
    bom = bom_codec(content)
    if bom is not None:
        return bom if bom != "utf-8" else None
    sample = content[:1024]
    sample = sample[: len(sample) - len(sample) % 4]
    nuls = sample.count(0)
    if len(sample) < 16 or nuls * 16 < len(sample):
        return None
    at = [sample[i::4].count(0) for i in range(4)]
    if nuls * 2 >= len(sample):  # three NULs in four bytes: UTF-32, the character at one end
        if at[0] * 10 < nuls and min(at[1:]) * 4 >= len(sample) // 4:
            return "utf-32-le"
        if at[3] * 10 < nuls and min(at[:3]) * 4 >= len(sample) // 4:
            return "utf-32-be"
    odd, even = at[1] + at[3], at[0] + at[2]
    if even * 20 <= odd:
        return "utf-16-le"
    if odd * 20 <= even:
        return "utf-16-be"
    return None


def is_utf8(content: bytes) -> bool:
    """Non-ASCII bytes that decode as strict UTF-8 (the first 64 KB; a cut character at the end is fine)."""
    sample = content[:65536]
    if sample.isascii():
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(sample) - 3 and len(sample) == 65536
    return True


def legacy_arabic(content: bytes) -> str | None:
    """``cp1256`` or ``iso8859-6`` when 8-bit ``content`` is Arabic text in one of them, else None.

    Both put Arabic letters at 0xC1-0xDA, and part ways above: ISO-8859-6's و ي ه (0xE7-0xEA) are
    Latin letters in Windows-1256, whose ف ق ك (0xDD-0xDF) ISO-8859-6 leaves undefined. So the one
    that decodes and reads as more Arabic letters per non-ASCII byte wins; Windows-1256, by far the
    commoner, on a tie.
    """
    sample = content[:20000]
    high = sum(1 for byte in sample if byte >= 0x80)
    if high < 20:
        return None
    best, best_score = None, 0.6
    for name in ("cp1256", "iso8859-6"):
        try:
            text = sample.decode(name)
        except UnicodeDecodeError:
            continue
        score = len(_ARABIC_LETTER.findall(text)) / high
        if score > best_score:
            best, best_score = name, score
    return best
