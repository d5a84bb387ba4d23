"""Persian text done right: one normal form for search and comparison, and Persian digits for display.

:func:`normalize` folds Arabic letter variants onto Persian ones (ي→ی, ك→ک,
ة→ه, أإآ→ا, ؤ→و, ئ→ی), removes diacritics and tatweel, turns Persian and
Arabic-Indic digits into Latin ones, treats ZWNJ as a word joint (removed, so
گواهی‌نامه, گواهی نامه and گواهینامه meet through :func:`compact`) and
lower-cases Latin text.
"""

from __future__ import annotations

import re
import unicodedata

ZWNJ = "\u200c"
_DIGITS_FA = "۰۱۲۳۴۵۶۷۸۹"
_DIGITS_AR = "٠١٢٣٤٥٦٧٨٩"
_LETTERS = {
    "ي": "ی",
    "ى": "ی",
    "ئ": "ی",
    "ك": "ک",
    "ة": "ه",
    "ۀ": "ه",
    "أ": "ا",
    "إ": "ا",
    "آ": "ا",
    "ٱ": "ا",
    "ؤ": "و",
    "ڪ": "ک",
    "ھ": "ه",
    "ہ": "ه",
}
_TABLE = str.maketrans(
    {
        **_LETTERS,
        **{f: str(i) for i, f in enumerate(_DIGITS_FA)},
        **{a: str(i) for i, a in enumerate(_DIGITS_AR)},
        "ـ": None,
        ZWNJ: None,
        "\u200d": None,
        "\u200e": None,
        "\u200f": None,
        "\u00ad": None,
        "،": ",",
        "؛": ";",
        "؟": "?",
    }
)
_SPACES = re.compile(r"\s+")
_TO_FA = str.maketrans({str(i): f for i, f in enumerate(_DIGITS_FA)})


def _strip_marks(text: str) -> str:
    # Arabic diacritics (harakat, tanwin, shadda, sukun, superscript alef) are combining marks.
    return "".join(c for c in text if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """The normal form for search and comparison (see the module's docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = _strip_marks(text).translate(_TABLE).lower()
    return _SPACES.sub(" ", text).strip()


def compact(text: str) -> str:
    """:func:`normalize` without any spaces: the form in which word joints no longer matter."""
    return normalize(text).replace(" ", "")


def to_latin_digits(text: str) -> str:
    return text.translate(
        {
            **{ord(f): str(i) for i, f in enumerate(_DIGITS_FA)},
            **{ord(a): str(i) for i, a in enumerate(_DIGITS_AR)},
        }
    )


def to_persian_digits(value: object) -> str:
    """Latin digits of ``value`` as Persian digits, for display."""
    return str(value).translate(_TO_FA)
