"""A toy tokenizer for the simulated fleet: word pieces with stable ids, for token counts.

Real tokenizers are not needed: the fleet only has to report plausible counts, truncate at
`max_new_tokens` and fill TGI's `details.tokens` list.
"""

from __future__ import annotations

import re
import zlib

# A token is optional leading whitespace plus a word, a number or one other character,
# so joining the pieces gives back the exact text.
_PIECE = re.compile(r"\s*(?:[A-Za-z]+|[0-9]{1,3}|[^\sA-Za-z0-9])|\s+")
VOCAB_SIZE = 32000


def pieces(text: str) -> list[str]:
    return _PIECE.findall(text)


def count(text: str) -> int:
    return len(pieces(text))


def token_id(piece: str) -> int:
    # Id 0-2 are special in most vocabularies; keep ordinary pieces clear of them.
    return 3 + zlib.crc32(piece.encode("utf-8")) % (VOCAB_SIZE - 3)
