"""Which endpoint URLs a caller may name: the operator's endpoints file, URL patterns, or any.

A search request names the URLs the server will connect to, so a server that took any URL would
connect anywhere its network reaches for whoever can call it (a port scanner, a way into
internal services). The server therefore accepts only:
- a URL listed in its endpoints file (`--endpoints`), compared as written there (a trailing `/`
  aside, as everywhere);
- a URL matching one of its patterns (`--allow-endpoint-patterns`): `scheme://host[:port][/path]`
  where each `*` in the host stands for any run of lowercase letters, digits and hyphens inside
  one DNS label, e.g. `http://tgi-*.models.svc:8080`. Scheme, port (present or absent) and path
  compare exactly; a `*` never crosses a `.`, `:`, `/` or `@`;
- anything, when the operator says so (`--allow-any-endpoint`; development and demos).

Nothing is normalised before comparing: a URL spelled differently from the allowed one (other
case, a trailing dot, userinfo, an IP literal, another port or path) is refused, since the
question is not "could this be the same server" but "did the operator write this".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from gemfinder.candidates import Candidate
from gemfinder.errors import UserError

_PATTERN = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9*.-]+|\[[0-9a-f:.]+\])(?P<port>:[0-9]{1,5})?"
    r"(?P<path>(/[A-Za-z0-9._~-]+)*)"
)


class EndpointNotAllowed(UserError):
    """Candidates naming an endpoint the operator does not allow (PERMISSION_DENIED).
    `field`/`reason` are the first one's; `violations` lists every one as (field, reason)."""

    kind = "permission_denied"

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        field, first = violations[0]
        more = len(violations) - 1
        reason = first + (f" (and {more} more candidates)" if more > 0 else "")
        super().__init__(field, reason)
        self.violations = violations


def compile_pattern(pattern: str, where: str) -> re.Pattern[str]:
    """The regular expression a pattern stands for; UserError naming `where` when malformed."""
    match = _PATTERN.fullmatch(pattern.rstrip("/"))
    if match is None:
        raise UserError(
            where,
            f"{pattern!r} is not a URL pattern: expected scheme://host[:port][/path] in lower "
            "case, with * only in the host (e.g. http://tgi-*.models.svc:8080)",
        )
    host = "[a-z0-9-]*".join(re.escape(part) for part in match["host"].split("*"))
    rest = re.escape(match["port"] or "") + re.escape(match["path"])
    return re.compile(f"{match['scheme']}://{host}{rest}")


@dataclass(frozen=True)
class EndpointAllowlist:
    """The endpoints callers may name. Empty (the default): none at all."""

    urls: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    any: bool = False

    @classmethod
    def build(
        cls, urls: Iterable[str], patterns: Iterable[str] = (), *, any: bool = False
    ) -> EndpointAllowlist:
        compiled = tuple(compile_pattern(p, "--allow-endpoint-patterns") for p in patterns)
        return cls(frozenset(u.rstrip("/") for u in urls), compiled, any)

    @property
    def empty(self) -> bool:
        return not (self.any or self.urls or self.patterns)

    def allows(self, url: str) -> bool:
        return self.any or url in self.urls or any(p.fullmatch(url) for p in self.patterns)

    def check(self, candidates: list[Candidate]) -> None:
        """Raise EndpointNotAllowed naming every candidate whose endpoint is not allowed
        (`candidates[i].endpoint`). Pure: nothing is resolved or connected to."""
        refused = [
            (
                f"candidates[{i}].endpoint",
                f"endpoint {cand.endpoint!r} is not allowed by this server: name an endpoint "
                "listed in its endpoints file, exactly as written there, or one matching its "
                "--allow-endpoint-patterns",
            )
            for i, cand in enumerate(candidates)
            if not self.allows(cand.endpoint)
        ]
        if refused:
            raise EndpointNotAllowed(refused)


ANY_ENDPOINT = EndpointAllowlist(any=True)
