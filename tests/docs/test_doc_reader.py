"""The doc test's own machinery: which blocks it finds, what markers do, and that a walkthrough
fails where it should and leaves no process behind."""

from __future__ import annotations

import os
import time

import pytest

from tests.docs.blocks import MarkerError, read_blocks
from tests.docs.walkthrough import BlockFailed, run_doc

DOC = """# Title
    indented after a heading

Text.

    indented after a blank line
    second line

- a list item

      code inside the list item

  continuation, not code
1. step one:

   ```bash
   fenced inside a list
   ```

<!-- doc-test: skip, needs a thing we do not have -->
```json
{"a": 1}
```

A paragraph
    is not a code block when it follows a paragraph line.

```console
$ echo hi
hi
```
"""


def write(tmp_path, text, name="doc.md"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_finds_fenced_and_indented_blocks(tmp_path):
    blocks = read_blocks(write(tmp_path, DOC))
    texts = [b.text for b in blocks]
    assert texts == [
        "indented after a heading\n",
        "indented after a blank line\nsecond line\n",
        "code inside the list item\n",
        "fenced inside a list\n",
        '{"a": 1}\n',
        "$ echo hi\nhi\n",
    ]
    assert [b.kind for b in blocks] == ["shell"] * 4 + ["other", "shell"]
    assert blocks[4].marker.skip == "needs a thing we do not have"
    assert blocks[5].script() == "echo hi\n"


@pytest.mark.parametrize(
    "marker, error",
    [
        ("skip", "needs a reason"),
        ("skip, gpu", "needs a reason"),
        ("smok --trials 2", "unknown doc-test clause"),
        ("smoke nowhere=--trials 2", "matches no command"),
    ],
)
def test_bad_markers_are_errors(tmp_path, marker, error):
    doc = write(tmp_path, f"<!-- doc-test: {marker} -->\n```\npython bench/x.py\n```\n")
    with pytest.raises(MarkerError, match=error):
        [b.script() for b in read_blocks(doc)]


def test_marker_away_from_a_block_is_an_error(tmp_path):
    doc = write(tmp_path, "<!-- doc-test: skip, needs a cluster -->\n\nText.\n\n```\nls\n```\n")
    with pytest.raises(MarkerError, match="not right above a code block, line \\[1\\]"):
        read_blocks(doc)


def test_smoke_appends_to_the_named_commands_before_comments(tmp_path):
    doc = write(
        tmp_path,
        "<!-- doc-test: smoke a.py=--trials 2; smoke b.py=--quick -->\n"
        "```\npython a.py --trials 1000   # slow\npython b.py \\\n    --x 1\nls '#a'\n```\n",
    )
    (block,) = read_blocks(doc)
    assert block.script() == (
        "python a.py --trials 1000 --trials 2  # slow\npython b.py      --x 1 --quick\nls '#a'\n"
    )


def test_unmarked_block_it_cannot_run_fails(tmp_path):
    doc = write(tmp_path, "```yaml\na: 1\n```\n")
    with pytest.raises(BlockFailed, match="doc.md:2"):
        run_doc(doc, tmp_path / "work", None)


def test_walkthrough_shares_a_directory_and_background_jobs(tmp_path):
    """Blocks run in order in one directory; a job one block starts in the background is
    there for the next, and gone after the walkthrough."""
    doc = write(
        tmp_path,
        "```\nsleep 300 & echo $! > pid\necho one > file\n```\n\n"
        "```python\nimport os\nos.kill(int(open('pid').read()), 0)\n"
        "assert open('file').read() == 'one\\n'\n```\n",
    )
    (tmp_path / "work").mkdir()
    run_doc(doc, tmp_path / "work", None)
    pid = int((tmp_path / "work" / "pid").read_text())
    assert not _alive(pid)


@pytest.mark.parametrize(
    "last, error",
    [
        ("```\nfalse\necho never\n```\n", "doc.md:6: exit status 1"),
        ("<!-- doc-test: timeout 1 -->\n```\nsleep 30\n```\n", "doc.md:7: timed out after 1 s"),
        ("<!-- doc-test: expect goodbye -->\n```\necho hello\n```\n", "output lacks 'goodbye'"),
    ],
)
def test_a_failing_block_fails_and_cleans_up(tmp_path, last, error):
    doc = write(tmp_path, "```\nsleep 300 & echo $! > pid\n```\n\n" + last)
    (tmp_path / "work").mkdir()
    with pytest.raises(BlockFailed, match=error):
        run_doc(doc, tmp_path / "work", None)
    pid = int((tmp_path / "work" / "pid").read_text())
    assert not _alive(pid)


def test_shared_data_blocks_are_left_out_without_the_data(tmp_path):
    doc = write(tmp_path, "<!-- doc-test: shared-data -->\n```\nfalse\n```\n")
    (tmp_path / "work").mkdir()
    assert run_doc(doc, tmp_path / "work", None) == ["doc.md:3"]


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        if _zombie(pid):
            return False
        time.sleep(0.05)
    return True


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False
