"""Log-likelihood of a continuation given its context, from the per-token log-probabilities a
server returns for the whole text context + continuation (lm-eval's `loglikelihood` request).

Both wire protocols give tokens with their text position: vLLM's echoed `text_offset`, TGI's
prefill tokens' texts (their running lengths are the offsets). A token belongs to the
continuation when it ends after the context's last character, so a token straddling the
boundary (a tokenizer merging the context's trailing space into the continuation's first word)
counts for the continuation, as lm-eval's own split (whitespace moved onto the continuation)
would count it. The first token of a text has no log-probability (None): it is never in the
continuation, which a non-empty context precedes.
"""

from __future__ import annotations

from collections.abc import Sequence

from gemfinder.backends.errors import GarbageResponse


def continuation_sum(
    offsets: Sequence[int], logprobs: Sequence[float | None], context: str, full: str
) -> float:
    """Sum of the log-probabilities of the tokens of `full` that end after `context`.

    `offsets[i]`: where token i starts in `full` (tokens past `len(full)`, such as a generated
    token, are ignored); `logprobs[i]` its log-probability."""
    if len(offsets) != len(logprobs):
        raise GarbageResponse("token offsets and log-probabilities differ in number")
    ends = [*offsets[1:], len(full)]
    total, counted = 0.0, 0
    for start, end, lp in zip(offsets, ends, logprobs, strict=True):
        if start >= len(full):  # generated, not part of the text asked about
            break
        if min(end, len(full)) <= len(context):
            continue
        if not isinstance(lp, int | float) or isinstance(lp, bool):
            raise GarbageResponse(f"the continuation's token at {start} has no log-probability")
        total += float(lp)
        counted += 1
    if counted == 0:
        raise GarbageResponse("no token of the continuation in the answer")
    return total


def offsets_from_texts(texts: Sequence[str], full: str) -> list[int]:
    """Start offsets in `full` of tokens given by their texts (TGI's prefill), where leading
    special tokens (`<s>`) may precede the text: the texts must spell `full` at their end."""
    joined = "".join(texts)
    if not joined.endswith(full):
        raise GarbageResponse("the prefill tokens do not spell the input text")
    pos = len(full) - len(joined)  # negative while in the leading special tokens
    offsets = []
    for text in texts:
        offsets.append(pos)
        pos += len(text)
    return offsets
