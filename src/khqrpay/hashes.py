"""The shapes of Bakong's transaction hashes, as the engine stores and staff type them."""

from __future__ import annotations

import re

# Lower-case: the engine keeps hashes normalised; inputs are lowered before they are matched.
# Always `fullmatch` them (`$` would let a trailing line break through).
FULL_HASH = re.compile(r"[0-9a-f]{64}")
SHORT_HASH_LENGTH = 8
SHORT_HASH = re.compile(rf"[0-9a-f]{{{SHORT_HASH_LENGTH}}}")
