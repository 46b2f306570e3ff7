"""How addresses are compared: one rule for the transform, the checks and `explain`.

An address's *clean form* is its Unicode NFKC normalisation with whitespace trimmed from both
ends; its *key* is the clean form lower-cased. Two users whose keys are equal hold the same
address (`duplicate_email`); a clean form that does not match `ADDRESS_RE` is no address
(`no_email`). The app stores the clean form (case kept, so an ASCII address with ordinary
spaces around it is stored exactly as before).

The set-wise statements compute both in Postgres (`sync.clean_address`, `sync.address_key`,
migration 012), and the snapshot check reads the key from the same function, so the check and
the transform cannot disagree. The Python functions here mirror them for code that handles a
single address (settings, `explain`) and for the tests that pin the two together.

- NFKC folds width and compatibility forms: a fullwidth `\uff21` is `A`, the ligature `\ufb01` is
  `fi`, a no-break space is a space (and so trimmed at the ends).
- Whitespace is what Python's `str.isspace()` calls whitespace (`WHITESPACE`); Postgres'
  btrim() and `\\s` know only some of it, so both sides spell the set out.
- lower(), not casefold(): the app's own rule is `lower(email)` unique among active users
  (app.users_active_email), and casefold() would also merge addresses the app keeps apart
  (`straße@` and `strasse@` are two mailboxes). Postgres has no casefold() before 18 either.

No Dagster imports (ground floor).
"""

from __future__ import annotations

import re
import sys
import unicodedata

# Every character Python's str.strip() removes (the Unicode White_Space property and the four
# ASCII separators U+001C-U+001F), in code point order; migration 012 spells out the same set.
WHITESPACE = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())

_NOT_AT_OR_SPACE = "[^@" + WHITESPACE + "]"

# The shape an address must have to be imported: something, @, something with a dot, and no
# whitespace anywhere. The characters stand in the pattern literally, which Python's re and
# Postgres' regular expressions (a bound parameter of the transform) read alike.
ADDRESS_RE = f"^{_NOT_AT_OR_SPACE}+@{_NOT_AT_OR_SPACE}+\\.{_NOT_AT_OR_SPACE}+$"
_ADDRESS = re.compile(ADDRESS_RE)


def clean(value: object) -> str | None:
    """NFKC, whitespace trimmed at both ends; None for no value or nothing left
    (`sync.clean_address`)."""
    if not isinstance(value, str):
        return None
    return unicodedata.normalize("NFKC", value).strip(WHITESPACE) or None


def key(value: object) -> str | None:
    """The clean form lower-cased: the address as the app compares it (`sync.address_key`)."""
    cleaned = clean(value)
    return cleaned.lower() if cleaned is not None else None


def well_formed(value: str | None) -> bool:
    """Whether a clean form is an address (`ADDRESS_RE`)."""
    return value is not None and _ADDRESS.search(value) is not None
