"""MBPP: lm-evaluation-harness style prompt, code extraction, and grading in the sandbox."""

from __future__ import annotations

import re

from gemfinder.tasks.base import GenerationSettings, Grade, Item, Prompt, Task

# A line holding a definition (`^\s*(def|class) ` crossed blank lines from every line start
# above: quadratic in a run of blank lines; the same lines match this way, in linear time).
_DEFINES = re.compile(r"^[^\S\n]*+(def|class) ", re.MULTILINE)
_TAGGED = re.compile(r"\[PYTHON\](.*?)(?:\[/PYTHON\]|\Z)", re.DOTALL)


def _fenced(text: str) -> list[str]:
    r"""The bodies of fenced blocks: from the line after an opening ``` (whatever follows it on
    its line) to the next ``` or the end. What `re.finditer` of
    ```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)``` (DOTALL) gives, without its
    rescan of the line from every ``` on it (quadratic on a line of backticks)."""
    blocks, pos = [], 0
    while (start := text.find("```", pos)) >= 0:
        newline = text.find("\n", start + 3)
        if newline < 0:  # no line ends after this fence, nor after any later one
            break
        end = text.find("```", newline + 1)
        if end < 0:
            blocks.append(text[newline + 1 :])
            break
        blocks.append(text[newline + 1 : end])
        pos = end + 3
    return blocks


def extract_code(response: str) -> str:
    """The program in a response: [BEGIN]...[DONE], a fenced or [PYTHON] block, or the text."""
    text = response.replace("\r\n", "\n")
    if "[BEGIN]" in text:
        text = text.split("[BEGIN]", 1)[1]
    text = text.split("[DONE]", 1)[0]
    blocks = _fenced(text)
    blocks += [m.group(1) for m in _TAGGED.finditer(text)]
    if blocks:
        # Chat models add usage examples in later blocks; the definition is what gets tested.
        with_def = [b for b in blocks if _DEFINES.search(b)]
        return (with_def or blocks)[0].strip("\n")
    return text.strip("\n")


def build_program(code: str, test_setup_code: str, tests: list[str]) -> str:
    """Code first, then setup, then asserts: two tasks' setup uses a class defined in the code."""
    parts = [code, test_setup_code or "", "\n".join(tests)]
    return "\n\n".join(p for p in parts if p.strip()) + "\n"


class Mbpp(Task):
    name = "mbpp"
    generation = GenerationSettings(max_new_tokens=512, stop=("[DONE]",))
    answer_form = "python_function"
    required_fields = ("text", "test_list")
    instruction = "You are an expert Python programmer."
    timeout_s = 10.0
    runs_code = True

    def validate(self, item: Item) -> str | None:
        reason = super().validate(item)
        tests = item.fields.get("test_list")
        if reason is None and not (isinstance(tests, list) and tests):
            reason = "test_list must be a non-empty list of assert statements"
        return reason

    def body(self, item: Item) -> str:
        tests = "\n".join(item.fields["test_list"])
        return (
            f"Here is your task: {str(item.fields['text']).strip()} "
            f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n"
        )

    def build_prompt(self, item: Item, system_prompt: bool) -> Prompt:
        prompt = super().build_prompt(item, system_prompt)
        # /generate gets lm-evaluation-harness's exact mbpp text (one sentence, no blank line).
        text = f"You are an expert Python programmer, and h{self.body(item)[1:]}"
        return Prompt(text=text, messages=prompt.messages)

    def grade_clean(self, item: Item, response: str) -> Grade:
        code = extract_code(response)
        if not code.strip():
            return Grade(correct=False, extracted=None)
        program = build_program(
            code, item.fields.get("test_setup_code") or "", list(item.fields["test_list"])
        )
        from gemfinder.tasks import sandbox  # imported here: only MBPP grading needs it

        result = sandbox.run_program(program, timeout_s=self.timeout_s)
        return Grade(correct=result.passed, extracted=code)
