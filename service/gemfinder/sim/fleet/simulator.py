"""The model side of one simulated TGI endpoint: request validation, decoding, stop sequences.

Kept free of HTTP so the semantics (what is greedy, what is a 422, where text stops) read in
one place. Greedy requests answer deterministically from the correctness matrix; sampled
requests flip the matrix verdict with some probability, so a client that samples by mistake
shows up as answers that disagree with the matrix. A prompt that matches no item of the query
set is a 422 (UnknownPrompt): the fleet has no verdict for it and never makes one up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from gemfinder.sim.fleet import loglik, tokens
from gemfinder.sim.fleet.config import EndpointSpec
from gemfinder.sim.fleet.index import PromptIndex
from gemfinder.sim.fleet.responder import respond
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import Item


class RequestInvalid(Exception):
    """A 422 `validation` error, with TGI's message."""


class UnknownPrompt(RequestInvalid):
    """The prompt is none of the fleet's items, or an item without a matrix column: a 422
    naming the problem (a real model would answer, but the fleet has no verdict to give)."""


UNKNOWN_PROMPT = (
    "simulated fleet: the prompt matches no item of the query set this fleet was started with; "
    "it answers only those items, from its correctness matrix"
)


@dataclass
class Generation:
    text: str  # generated text only (the prompt is prepended by the HTTP layer if asked)
    finish_reason: str  # length | eos_token | stop_sequence
    pieces: list[str]
    input_tokens: int
    seed: int | None
    item: Item | None
    row: str = ""
    special_eos: bool = False


class SimulatedModel:
    """All models served by one endpoint: the base model and its LoRA adapters."""

    def __init__(
        self,
        spec: EndpointSpec,
        matrix: CorrectnessMatrix,
        index: PromptIndex,
        seed: int = 0,
        flip_prob: float = 0.3,
    ) -> None:
        self.spec = spec
        self.matrix = matrix
        self.index = index
        self.seed = seed
        self.flip_prob = flip_prob
        self._rows = {name: k for k, name in enumerate(matrix.models)}
        self._cols = {name: i for i, name in enumerate(matrix.items)}
        # The adapters served now, name -> row: vLLM's runtime API adds and removes some.
        self.adapters = dict(spec.adapters)
        loadable = spec.serving.lora_paths.values() if spec.serving else ()
        for row in [spec.model_id, *spec.adapters.values(), *loadable]:
            if row not in self._rows:
                raise ValueError(f"endpoint {spec.name}: model {row!r} is not a matrix row")
        self._sampler = random.Random(seed)

    def row_for(self, adapter_id: str | None) -> str:
        # TGI serves the base model for any adapter id it was not launched with: no error.
        if adapter_id and adapter_id in self.adapters:
            return self.adapters[adapter_id]
        return self.spec.model_id

    def validate(self, input_tokens: int, params: dict[str, Any]) -> int:
        """TGI's router checks; returns the effective max_new_tokens."""
        spec = self.spec
        temperature = params.get("temperature")
        if temperature is not None and temperature <= 0:
            raise RequestInvalid("`temperature` must be strictly positive")
        for key in ("top_p", "typical_p"):
            value = params.get(key)
            if value is not None and not 0.0 < value < 1.0:
                raise RequestInvalid(f"`{key}` must be > 0.0 and < 1.0")
        top_k = params.get("top_k")
        if top_k is not None and top_k <= 0:
            raise RequestInvalid("`top_k` must be strictly positive")
        repetition = params.get("repetition_penalty")
        if repetition is not None and repetition <= 0:
            raise RequestInvalid("`repetition_penalty` must be strictly positive")
        stop = params.get("stop") or []
        if len(stop) > spec.max_stop_sequences:
            raise RequestInvalid(
                f"`stop` supports up to {spec.max_stop_sequences} stop sequences. "
                f"Given: {len(stop)}"
            )
        if input_tokens == 0:
            raise RequestInvalid("Input validation error: `inputs` cannot be empty")
        if input_tokens > spec.max_input_tokens:
            raise RequestInvalid(
                f"Input validation error: `inputs` must have less than {spec.max_input_tokens} "
                f"tokens. Given: {input_tokens}"
            )
        max_new = params.get("max_new_tokens")
        if max_new is None:
            max_new = spec.max_total_tokens - input_tokens
        if max_new <= 0:
            raise RequestInvalid("`max_new_tokens` must be strictly positive")
        if input_tokens + max_new > spec.max_total_tokens:
            raise RequestInvalid(
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                f"{spec.max_total_tokens}. Given: {input_tokens} `inputs` tokens and "
                f"{max_new} `max_new_tokens`"
            )
        return int(max_new)

    def correct(self, row: str, item: Item) -> bool:
        col = self._cols.get(item.id)
        if col is None:  # Fleet refuses such query sets; never a made-up verdict
            raise UnknownPrompt(f"simulated fleet: item {item.id} is not a column of the matrix")
        return bool(self.matrix.correct[self._rows[row], col])

    def loglikelihood_tokens(
        self, text: str, adapter_id: str | None
    ) -> tuple[str, list[tuple[str, float | None]]] | None:
        """For the full text of one choice of a multiple-choice item: (matrix row, every
        token's (text, log-probability)), consistent with the matrix verdict for that model
        and item; None when `text` is no such choice."""
        found = self.index.find_choice(text)
        if found is None:
            return None
        item, choice, context, continuation = found
        row = self.row_for(adapter_id)
        rng = random.Random(f"{self.seed}|{row}|{item.id}|loglikelihood")
        try:
            predicted = loglik.predicted_choice(item, self.correct(row, item), rng)
        except loglik.NoSuchAnswer as err:
            raise RequestInvalid(str(err)) from None
        total = loglik.choice_total(item, choice, predicted, rng)
        return row, loglik.token_logprobs(context, continuation, total)

    def generate(
        self,
        item: Item | None,
        input_tokens: int,
        *,
        adapter_id: str | None,
        sampling: bool,
        seed: int | None,
        max_new_tokens: int,
        stop: list[str],
        chat: bool,
    ) -> Generation:
        row = self.row_for(adapter_id)
        if item is None:
            raise UnknownPrompt(UNKNOWN_PROMPT)
        verdict = self.correct(row, item)
        if sampling:
            if seed is None:
                seed = self._sampler.randrange(1, 2**63)
            rng = random.Random(f"{self.seed}|{seed}|{row}|{item.id}")
            if rng.random() < self.flip_prob:
                verdict = not verdict
        else:
            rng = random.Random(f"{self.seed}|{row}|{item.id}|{chat}")
        raw = respond(item, verdict, rng, chat)
        text, reason, pieces = apply_limits(raw, stop, max_new_tokens)
        return Generation(
            text=text,
            finish_reason=reason,
            pieces=pieces,
            input_tokens=input_tokens,
            seed=seed if sampling else None,
            item=item,
            row=row,
            special_eos=reason == "eos_token",
        )


def apply_limits(raw: str, stop: list[str], max_new_tokens: int) -> tuple[str, str, list[str]]:
    """Cut at the first stop sequence (kept, as TGI does) or at max_new_tokens."""
    cut = None
    for seq in stop:
        if not seq:
            continue
        at = raw.find(seq)
        if at >= 0 and (cut is None or at + len(seq) < cut):
            cut = at + len(seq)
    text = raw[:cut] if cut is not None else raw
    pieces = tokens.pieces(text)
    if len(pieces) > max_new_tokens:
        pieces = pieces[:max_new_tokens]
        return "".join(pieces), "length", pieces
    return text, "stop_sequence" if cut is not None else "eos_token", pieces
