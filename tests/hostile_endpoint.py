"""A hostile endpoint on 127.0.0.1: /generate (and the OpenAI routes, and vLLM's runtime LoRA
routes) answers `size` bytes,
streamed without a length (or declaring one, gzip-compressed, or JSON nested `size` deep),
counting what it managed to send; /info and /v1/models answer normally, or with `probe_body`
when given."""

from __future__ import annotations

import asyncio
import gzip
import json

from aiohttp import web

CHUNK = 64 * 1024


class HostileEndpoint:
    def __init__(
        self,
        size: int,
        model_id: str = "org/base",
        mode: str = "stream",
        probe_body: bytes | None = None,
    ) -> None:
        self.size, self.model_id, self.mode, self.probe_body = size, model_id, mode, probe_body
        self.requests = 0
        self.sent = 0  # body bytes written before the client stopped reading
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _info(self, request: web.Request) -> web.Response:
        if self.probe_body is not None:
            return web.Response(body=self.probe_body, content_type="application/json")
        return web.json_response({"model_id": self.model_id, "max_concurrent_requests": 4})

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        head = b'{"generated_text": "'
        tail = b'", "details": {"generated_tokens": 1}}'
        if self.mode == "deep":
            return web.Response(body=b"[" * self.size + b"]" * self.size)
        if self.mode == "gzip":  # small on the wire, `size` bytes once inflated
            body = head + b"7" * (self.size - len(head) - len(tail)) + tail
            return web.Response(
                body=gzip.compress(body),
                headers={"Content-Encoding": "gzip"},
                content_type="application/json",
            )
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.mode == "declared":
            response.content_length = self.size
        await response.prepare(request)
        try:
            await response.write(head)
            left = self.size - len(head) - len(tail)
            while left > 0:
                n = min(CHUNK, left)
                await response.write(b"7" * n)
                self.sent += n
                left -= n
            await response.write(tail)
            await response.write_eof()
        except ConnectionError:
            # The client stopped reading (what it cost us is in `sent`); ending the response
            # here keeps aiohttp from trying to, and logging the same error.
            response.force_close()
            raise asyncio.CancelledError from None
        return response

    async def __aenter__(self) -> HostileEndpoint:
        app = web.Application()
        app.router.add_get("/info", self._info)
        app.router.add_get("/v1/models", self._info)
        for path in ("/generate", "/v1/chat/completions", "/v1/completions"):
            app.router.add_post(path, self._generate)  # every backend's route
        for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            app.router.add_post(path, self._generate)  # vLLM's runtime LoRA API: 200, `size` bytes
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def small_answer() -> bytes:
    return json.dumps({"generated_text": "#### 7", "details": {"generated_tokens": 3}}).encode()
