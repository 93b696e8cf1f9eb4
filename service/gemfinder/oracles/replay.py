"""An oracle answering from a correctness matrix: offline searches and simulations, no HTTP."""

from __future__ import annotations

import hashlib

from gemfinder.candidates import Candidate
from gemfinder.errors import UserError
from gemfinder.oracles.base import OracleResult
from gemfinder.oracles.stats import OracleStats
from gemfinder.sim.matrix import CorrectnessMatrix
from gemfinder.tasks import Item


class ReplayOracle:
    def __init__(self, matrix: CorrectnessMatrix, stats: OracleStats | None = None) -> None:
        self.matrix = matrix
        self.stats = stats or OracleStats()
        self._rows = {name: k for k, name in enumerate(matrix.models)}
        self._cols = {name: i for i, name in enumerate(matrix.items)}
        self._scope: str | None = None

    def cache_scope(self, endpoint: str) -> str:
        """The matrix answers, whatever the endpoint: its answers are cached apart from any
        live endpoint's and from any other matrix's."""
        if self._scope is None:
            digest = hashlib.sha256(self.matrix.correct.tobytes())
            digest.update("\n".join([*self.matrix.models, *self.matrix.items]).encode())
            self._scope = f"replay:{digest.hexdigest()}"
        return self._scope

    async def prepare(self, candidates: list[Candidate]) -> None:
        missing = [c.model_id for c in candidates if c.model_id not in self._rows]
        if missing:
            raise UserError("candidates", f"not rows of the matrix: {', '.join(missing[:5])}")

    async def release(self, candidates: list[Candidate]) -> None:
        """Nothing is held per search."""

    async def answer(
        self, candidate: Candidate, item: Item, *, system_prompt: bool = False
    ) -> OracleResult:
        # The matrix holds one answer per (model, item): the prompt variant cannot change it.
        row = self._rows.get(candidate.model_id)
        col = self._cols.get(item.id)
        if row is None or col is None:
            what = "model" if row is None else "item"
            name = candidate.model_id if row is None else item.id
            raise UserError(what, f"{name!r} is not in the correctness matrix")
        reward = int(self.matrix.correct[row, col])
        self.stats.record("pull")
        self.stats.record("graded")
        if reward:
            self.stats.record("correct")
        return OracleResult(model_id=candidate.model_id, item_id=item.id, reward=reward)

    async def aclose(self) -> None:
        return None
