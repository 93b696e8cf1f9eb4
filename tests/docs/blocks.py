"""Find the code blocks of a Markdown file and the doc-test marker written right before each.

A small reader for the two kinds of CommonMark code block the docs use: fenced (```, ~~~, up
to 3 spaces of indentation, e.g. inside a numbered list) and indented (4 spaces more than the
list item they sit in, after a blank line or a heading). It is not a full Markdown parser; the
docs are plain enough for these rules, and tests/docs/test_doc_reader.py pins them.

Markers are HTML comments, invisible on a rendered page, on the closest non-blank line above a
block: `<!-- doc-test: CLAUSE; CLAUSE -->`, clauses as in `Marker.parse`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([\w+-]*)")
LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+")
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(.*?)\s*-->\s*$")
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
PYTHON_LANGS = {"python", "py"}


class MarkerError(ValueError):
    """A marker the doc test cannot follow; the message names the doc and line."""


@dataclass(frozen=True)
class Marker:
    """What a `<!-- doc-test: ... -->` comment asks for. Clauses, separated by `;`:

    - `skip, REASON` (alone, the rest of the comment is the reason): do not run the block;
      REASON says why (needs a cluster, ...).
    - `smoke ARGS` or `smoke KEY=ARGS`: append ARGS to every command of the block, or only to
      the commands containing KEY (e.g. a script name; KEY does not start with `-`), to run a
      long bench at a small size. ARGS come last, so they override the command's own.
    - `shared-data`: the block reads ../shared/data; without it the block is skipped like the
      tests that need it (a failure when GEMFINDER_REQUIRE_SHARED_DATA=1).
    - `expect TEXT`: the block's output must contain TEXT.
    - `timeout SECONDS`: more than the default time for this block.
    """

    skip: str | None = None
    smoke: tuple[tuple[str | None, str], ...] = ()
    shared_data: bool = False
    expect: tuple[str, ...] = ()
    timeout: float | None = None

    @classmethod
    def parse(cls, text: str, where: str) -> Marker:
        if text.startswith("skip"):  # the rest is the reason, `;` and all
            reason = text[len("skip") :].lstrip(" ,:").strip()
            if len(reason.split()) < 3:
                raise MarkerError(f"{where}: `skip` needs a reason of a few words: {text!r}")
            return cls(skip=reason)
        smoke, shared, expect, timeout = [], False, [], None
        for clause in (c.strip() for c in text.split(";")):
            word, _, rest = clause.partition(" ")
            rest = rest.strip()
            if word == "smoke" and rest:
                key, eq, args = rest.partition("=")
                if eq and not key.startswith("-"):
                    smoke.append((key.strip(), args.strip()))
                else:
                    smoke.append((None, rest))
            elif clause == "shared-data":
                shared = True
            elif word == "expect" and rest:
                expect.append(rest)
            elif word == "timeout" and rest.replace(".", "", 1).isdigit():
                timeout = float(rest)
            else:
                raise MarkerError(f"{where}: unknown doc-test clause {clause!r} in {text!r}")
        return cls(None, tuple(smoke), shared, tuple(expect), timeout)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the first code line
    lang: str  # fence info word, lower case ("" for none and for indented blocks)
    text: str  # the code, indentation removed, ending in a newline
    marker: Marker = field(default_factory=Marker)

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def kind(self) -> str:
        """`shell`, `python`, or `other` (a language the doc test cannot run)."""
        if self.lang in SHELL_LANGS:
            return "shell"
        return "python" if self.lang in PYTHON_LANGS else "other"

    def script(self) -> str:
        """The block as the doc test runs it: `console` keeps its `$ ` lines only, and smoke
        arguments are appended to the commands they name."""
        text = self.text
        if self.lang == "console":
            text = "".join(line[2:] + "\n" for line in text.splitlines() if line.startswith("$ "))
        for key, args in self.marker.smoke:
            text = _append_args(text, key, args, self.where)
        return text


def read_blocks(path: Path) -> list[Block]:
    """Every code block of `path`, in order, with its marker. A marker that is not right
    above a block is an error, so a marker cannot silently stop applying."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    used: set[int] = set()

    def add(first_code: int, opening: int, lang: str, body: list[str]) -> None:
        k = opening - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        found = MARKER.match(lines[k]) if k >= 0 else None
        marker = Marker()
        if found:
            used.add(k)
            marker = Marker.parse(found.group(1), f"{path.name}:{k + 1}")
        text = "\n".join(body) + "\n"
        blocks.append(Block(path, first_code + 1, lang.lower(), text, marker))

    i = 0
    list_indent: int | None = None  # content indent of the list item we are in, if any
    previous_blank = True
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            indent, token, lang = len(fence.group(1)), fence.group(2), fence.group(3)
            body, j = [], i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(token):
                body.append(_dedent(lines[j], indent))
                j += 1
            add(i + 1, i, lang, body)
            i, previous_blank = j + 1, False
            continue
        code_indent = (list_indent or 0) + 4
        if line.strip() and previous_blank and _indent(line) >= code_indent:
            body, j = [], i
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) >= code_indent):
                body.append(_dedent(lines[j], code_indent))
                j += 1
            while body and not body[-1].strip():
                body.pop()
            add(i, i, "", body)
            i, previous_blank = i + len(body), False
            continue
        item = LIST_ITEM.match(line)
        if item:
            list_indent = len(item.group(0))
        elif line.strip() and _indent(line) == 0 and previous_blank:
            list_indent = None
        # An indented block may follow a blank line, a heading or an HTML comment (a marker),
        # never a paragraph line.
        previous_blank = not line.strip() or line.startswith("#") or bool(MARKER.match(line))
        i += 1
    stray = [k + 1 for k, line in enumerate(lines) if MARKER.match(line) and k not in used]
    if stray:
        raise MarkerError(
            f"{path.name}: doc-test marker not right above a code block, line {stray}"
        )
    return blocks


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _dedent(line: str, width: int) -> str:
    return line[min(width, _indent(line)) :]


def _append_args(text: str, key: str | None, args: str, where: str) -> str:
    """Append `args` to each command line (continuation lines joined) that contains `key`
    (every command when key is None), before a trailing `# comment`."""
    out, hits = [], 0
    for line in text.replace("\\\n", " ").splitlines():
        code, comment = _split_comment(line)
        command = code.strip()
        is_command = command and not command.startswith(("until ", "while ", "do ", "done"))
        if is_command and (key is None or key in command):
            code, hits = f"{code.rstrip()} {args}", hits + 1
            line = f"{code}  {comment}" if comment else code
        out.append(line)
    if not hits:
        raise MarkerError(f"{where}: smoke {key or ''}={args!r} matches no command of the block")
    return "\n".join(out) + "\n"


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of a shell line; a `#` inside quotes or a word is not a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i:]
    return line, ""
