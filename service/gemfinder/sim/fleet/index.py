"""Which query-set item a prompt asks about: exact prompt lookup, then a question-text search.

The exact index holds every item's prompt as the real tasks build it, for /generate text and
chat messages, with and without the system prompt. A client that phrases prompts its own way
still gets served through the fallback: the item whose question text appears in the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from gemfinder.tasks import Item, get_task


def messages_key(messages: Iterable[dict]) -> str:
    """A canonical key for chat messages (role and text content only)."""
    flat = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # content chunks: keep the text parts
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        flat.append([str(message.get("role", "")), str(content or "")])
    return json.dumps(flat, ensure_ascii=False)


class PromptIndex:
    def __init__(self, items: Iterable[Item]) -> None:
        self.items: dict[str, Item] = {}
        self._by_text: dict[str, Item] = {}
        self._by_messages: dict[str, Item] = {}
        self._needles: list[tuple[str, Item]] = []
        # context + continuation -> (item, choice, context, continuation): multiple-choice
        # lm_eval items, asked for log-likelihoods of each choice's full text
        self._by_choice: dict[str, tuple[Item, int, str, str]] = {}
        for item in items:
            self.items[item.id] = item
            task = get_task(item.task)
            for k, (ctx, cont) in enumerate(task.loglikelihood_requests(item)):
                self._by_choice.setdefault(ctx + cont, (item, k, ctx, cont))
            for system_prompt in (True, False):
                prompt = task.build_prompt(item, system_prompt)
                self._by_text.setdefault(prompt.text, item)
                self._by_messages.setdefault(messages_key(prompt.messages), item)
            needle = str(item.fields.get("question") or item.fields.get("text") or "").strip()
            if len(needle) >= 12:
                self._needles.append((needle, item))
        # Longest first, so an item whose question contains another's wins over it.
        self._needles.sort(key=lambda pair: len(pair[0]), reverse=True)

    def __len__(self) -> int:
        return len(self.items)

    def find_text(self, prompt: str) -> Item | None:
        item = self._by_text.get(prompt)
        return item if item is not None else self._search(prompt)

    def find_choice(self, text: str) -> tuple[Item, int, str, str] | None:
        """The multiple-choice item and choice whose context + continuation is `text`."""
        return self._by_choice.get(text)

    def find_messages(self, messages: list[dict]) -> Item | None:
        key = messages_key(messages)
        item = self._by_messages.get(key)
        if item is not None:
            return item
        return self._search("\n".join(content for _, content in json.loads(key)))

    def _search(self, prompt: str) -> Item | None:
        for needle, item in self._needles:
            if needle in prompt:
                return item
        return None
