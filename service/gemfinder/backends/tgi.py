"""BACKEND_TGI: text-generation-inference `POST /generate`, the raw prompt, greedy.

`do_sample=False` and no temperature/top_k/top_p/typical_p (any of them turns sampling on),
`max_new_tokens` always, `return_full_text=False` always, `adapter_id` for LoRA candidates.
No `details`: huggingface_hub parses them into dataclasses token by token (0.15 ms of CPU per
answer, a third of the client's cost: docs/oracles.md), and the token counts they were asked
for come in TGI's `x-prompt-tokens` / `x-generated-tokens` response headers anyway (read by the
transport into backends.base.RESPONSE_HEADERS; None when a server does not send them).

Log-likelihoods (multiple-choice lm_eval items; TGI's `/v1/completions` has no echo or
logprobs): `POST /generate` of context + continuation with `decoder_input_details=True` and
`max_new_tokens=1`; the answer's `details.prefill` lists the input's tokens with their texts and
log-probabilities, and the continuation's are summed. Where the continuation starts comes from
the tokens' texts when they spell the input (byte-level BPE tokenizers, whose tokens decode one
by one to their exact text, a leading `<s>` aside); otherwise (SentencePiece tokenizers drop a
token's leading space when it is decoded alone) from `POST /tokenize` of the same text, whose
tokens carry their character `start`, matched to the prefill tokens by id. The library has no
method for /tokenize, so `TgiClient` posts it through a session of the library's public client
factory (`get_async_session`: the byte-capped transport that never follows a redirect,
oracles.transport), with the library's headers and error types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gemfinder.backends.base import RESPONSE_HEADERS, Backend, Call, Completion
from gemfinder.backends.checks import served_by_info
from gemfinder.backends.errors import GarbageResponse
from gemfinder.backends.hf import inference_client
from gemfinder.backends.loglik import continuation_sum, offsets_from_texts
from gemfinder.backends.probe import info_and_models
from gemfinder.v1 import gemfinder_pb2 as pb

if TYPE_CHECKING:
    import httpx2


class TgiClient:
    """One endpoint's client: huggingface_hub's AsyncInferenceClient for /generate, and a
    session of the same client factory for /tokenize, opened on its first use (only models whose
    prefill texts do not spell the input need it); both closed by `close`."""

    def __init__(self, token: str, timeout: float):
        from huggingface_hub.utils import build_hf_headers

        self.inference = inference_client(None, token, timeout)  # installs the transport
        self.headers = build_hf_headers(token=token)
        self.timeout = timeout
        self._session: httpx2.AsyncClient | None = None
        self._closed = False

    async def tokenize(self, url: str, text: str) -> Any:
        """The decoded JSON of `POST {url}/tokenize`; HfHubHTTPError for an error status,
        oracles.transport.Redirected for a redirect (never followed)."""
        from huggingface_hub.utils import get_async_session, hf_raise_for_status

        if self._closed:
            raise RuntimeError(f"the client of {url} is closed")
        if self._session is None:
            self._session = get_async_session()
        response = await self._session.post(
            f"{url}/tokenize", json={"inputs": text}, headers=self.headers, timeout=self.timeout
        )
        hf_raise_for_status(response)
        return response.json()

    async def close(self) -> None:
        self._closed = True
        await self.inference.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.aclose()


def connect(url: str, token: str, timeout: float) -> TgiClient:
    return TgiClient(token, timeout)


async def query(client: TgiClient, call: Call) -> Completion:
    headers: dict[str, str] = {}
    RESPONSE_HEADERS.set(headers)  # this task's next answer's headers land here
    try:
        text = await client.inference.text_generation(
            call.prompt.text,
            model=f"{call.url}/generate",  # posted to as given: a bare URL would hit POST /
            max_new_tokens=call.generation.max_new_tokens,
            stop=list(call.generation.stop),
            do_sample=False,
            return_full_text=False,
            adapter_id=call.adapter_id,
        )
    finally:
        RESPONSE_HEADERS.set(None)
    if not isinstance(text, str):
        raise GarbageResponse("response has no generated_text")
    prompt, generated = headers.get("x-prompt-tokens", ""), headers.get("x-generated-tokens", "")
    return Completion(
        text,
        int(prompt) if prompt.isdigit() else None,
        int(generated) if generated.isdigit() else None,
    )


async def _tokenized_offsets(
    client: TgiClient, url: str, full: str, prefill_ids: list[int]
) -> list[int]:
    """Start offsets of the prefill tokens from TGI's `/tokenize` (leading special tokens that
    /tokenize does not list get -1: never part of the continuation)."""
    toks = await client.tokenize(url, full)
    if not isinstance(toks, list) or not all(
        isinstance(t, dict) and isinstance(t.get("id"), int) and isinstance(t.get("start"), int)
        for t in toks
    ):
        raise GarbageResponse("/tokenize answered no list of tokens with id and start")
    lead = len(prefill_ids) - len(toks)
    if lead < 0 or prefill_ids[lead:] != [t["id"] for t in toks]:
        raise GarbageResponse("the tokens of /tokenize are not the prefill tokens")
    return [-1] * lead + [t["start"] for t in toks]


async def loglikelihood(
    client: TgiClient, call: Call, context: str, continuation: str
) -> tuple[float, int | None]:
    full = context + continuation
    out = await client.inference.text_generation(
        full,
        model=f"{call.url}/generate",
        max_new_tokens=1,  # TGI generates at least one token; its log-probability is unused
        do_sample=False,
        details=True,
        decoder_input_details=True,
        adapter_id=call.adapter_id,
    )
    prefill = getattr(getattr(out, "details", None), "prefill", None)
    if not prefill:
        raise GarbageResponse("response has no details.prefill")
    texts = [getattr(t, "text", None) for t in prefill]
    if not all(isinstance(t, str) for t in texts):
        raise GarbageResponse("a prefill token has no text")
    logprobs = [getattr(t, "logprob", None) for t in prefill]
    try:
        offsets = offsets_from_texts(texts, full)  # type: ignore[arg-type]
    except GarbageResponse:
        offsets = await _tokenized_offsets(client, call.url, full, [t.id for t in prefill])
    return continuation_sum(offsets, logprobs, context, full), len(prefill)


BACKEND = Backend(
    enum=pb.BACKEND_TGI,
    name="tgi",
    route="/generate",
    summary="POST /generate, raw prompt",
    connect=connect,
    query=query,
    probe=info_and_models,
    check=served_by_info,
    loglikelihood=loglikelihood,
)
