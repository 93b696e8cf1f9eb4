"""Log-likelihoods the simulated models give multiple-choice lm_eval items, from the matrix.

A model's answer to such an item is the choice its log-likelihoods rank first: the gold choice
when the correctness matrix says the model is right, another one (the same for every request,
seeded by model and item) when it is wrong. The predicted choice's continuation gets a
log-likelihood near -1, every other one below -20 per byte of the longest choice, so it ranks
first by lm-eval's acc (sum), acc_norm (per character) and acc_bytes (per byte) alike.

`token_logprobs` spreads a continuation's total over its tokens of the fleet's toy tokenizer
(gemfinder.sim.fleet.tokens), the context's tokens getting a flat value and the first token none,
as servers report the first token of a prompt.
"""

from __future__ import annotations

import random

from gemfinder.sim.fleet import tokens
from gemfinder.tasks import Item

CONTEXT_LOGPROB = -1.5


class NoSuchAnswer(ValueError):
    """The matrix verdict cannot be given for this item (no valid gold, or no wrong choice)."""


def predicted_choice(item: Item, correct: bool, rng: random.Random) -> int:
    fields = item.fields
    n = len(fields["requests"])
    gold = fields["gold"]
    golds = [g for g in (gold if isinstance(gold, list) else [gold]) if 0 <= g < n]
    if correct:
        if not golds:
            raise NoSuchAnswer(f"simulated fleet: item {item.id} has no gold choice in range")
        return golds[0]
    wrong = [i for i in range(n) if i not in golds]
    if not wrong:
        raise NoSuchAnswer(f"simulated fleet: every choice of item {item.id} is gold")
    return rng.choice(wrong)


def choice_total(item: Item, choice: int, predicted: int, rng: random.Random) -> float:
    """The log-likelihood of choice `choice`'s continuation (rng seeded per model and item)."""
    longest = max(len(str(c).encode("utf-8")) for c in item.fields["choices"]) or 1
    spread = [rng.random() for _ in item.fields["requests"]]
    if choice == predicted:
        return -(0.3 + spread[choice])
    return -(20.0 + 10.0 * spread[choice]) * longest


def token_logprobs(context: str, continuation: str, total: float) -> list[tuple[str, float | None]]:
    """(token text, log-probability) for every token of context + continuation; the tokens
    ending after the context share `total` equally."""
    pieces = tokens.pieces(context + continuation)
    ends, pos = [], 0
    for piece in pieces:
        pos += len(piece)
        ends.append(pos)
    in_continuation = [end > len(context) for end in ends]
    share = total / max(1, sum(in_continuation))
    out: list[tuple[str, float | None]] = []
    for i, piece in enumerate(pieces):
        if i == 0:
            out.append((piece, None))
        else:
            out.append((piece, share if in_continuation[i] else CONTEXT_LOGPROB))
    return out
