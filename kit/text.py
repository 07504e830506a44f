"""Free text the platform accepts: printable Unicode, never what a database or a terminal chokes on.

Refused: control characters (category Cc: NUL, ESC, BEL, ...; PostgreSQL cannot store NUL in
text, and escape sequences end up in logs and labels), surrogates (Cs: not text at all), and
invisible format characters (Cf) that reorder or hide text (bidirectional overrides used for
spoofing), except the joiners that emoji and several scripts need (ZWNJ, ZWJ).
Any other Unicode is welcome: names and addresses are written in every script.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# Zero-width non-joiner and joiner: part of Persian, Indic scripts and emoji sequences.
ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Cf"})


# Line breaks and tabs: fine in a description or a note, not in a name or an address line.
LAYOUT = frozenset({"\n", "\r", "\t"})


def unprintable(value: str, allowed: frozenset[str] = ALLOWED_FORMAT) -> list[str]:
    """The characters of `value` that free text may not hold, as U+XXXX (empty when none)."""
    return sorted(
        {
            f"U+{ord(char):04X}"
            for char in value
            if unicodedata.category(char) in REFUSED_CATEGORIES and char not in allowed
        }
    )


def _refuse(refused: list[str]) -> None:
    if refused:
        raise ValueError(f"control or invisible characters are not accepted: {', '.join(refused)}")


def printable(value: str) -> str:
    """`value` unchanged, or ValueError naming the characters it may not hold."""
    _refuse(unprintable(value))
    return value


def printable_lines(value: str) -> str:
    """Like `printable`, with line breaks and tabs allowed."""
    _refuse(unprintable(value, ALLOWED_FORMAT | LAYOUT))
    return value


# A string field of free text on one line (names, address lines, codes).
PlainText = Annotated[str, AfterValidator(printable)]
# Free text over several lines (descriptions, notes).
MultilineText = Annotated[str, AfterValidator(printable_lines)]
