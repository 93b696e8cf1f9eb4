"""Errors of the backends' calls: an answer that lacks what its API promises, and the reason a
server gave for an HTTP error, added to it so that the recorded failure says why."""

from __future__ import annotations

from typing import Any


class GarbageResponse(ValueError):
    """A 200 response that parsed but lacks what the API promises."""


NO_CHAT_TEMPLATE_HINT = (
    " (a model without a chat template: call it with the raw prompt, backend "
    "BACKEND_OPENAI_COMPLETIONS; docs/oracles.md)"
)


def add_server_message(exc: BaseException) -> None:
    """vLLM (0.6) puts its reason in a top-level `message`, which huggingface_hub does not
    read (it reads `error`): add it to an HTTP error from any backend, so the recorded failure
    says why, and for a chat request refused for want of a chat template, what to use."""
    from huggingface_hub.errors import HfHubHTTPError  # loaded once a client has been built

    response = getattr(exc, "response", None)
    if not isinstance(exc, HfHubHTTPError) or response is None:
        return
    message = getattr(exc, "server_message", None)
    if not message:
        try:
            body = response.json()
        except ValueError:
            return
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message:
            return
        exc.append_to_message(f"\n{message}")
    if "chat template" in str(message) and "BACKEND_OPENAI_COMPLETIONS" not in str(exc):
        exc.append_to_message(NO_CHAT_TEMPLATE_HINT)


def count(value: Any) -> int | None:
    """A token count from a decoded JSON answer, or None when it is not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
