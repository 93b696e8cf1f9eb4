"""Progress on stderr: plain lines (no carriage returns) when it is not a terminal, a bar when
it is; `gemfinder demo` in a pipe writes lines a log can hold."""

from __future__ import annotations

import io
import subprocess
import sys

from gemfinder.cli._progress import LineProgress, progress


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_each_tenth_and_after_a_quiet_spell_only():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress("searching", 1000, "q", out, heartbeat_s=10.0, clock=clock)
    for spent in range(0, 996, 5):  # 200 updates, 0.01 s apart
        clock.now += 0.01
        p.update(spent, 1000, f"round {spent // 250 + 1}")
    p.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10  # one per tenth passed (10% .. 90%), then the last state
    assert lines[0] == "searching: 100/1,000 q (10%), round 1"
    assert lines[-1] == "searching: 995/1,000 q (99%), round 4"
    p.close()  # nothing new to say: no second copy of the last line
    assert len(out.getvalue().splitlines()) == 10


def test_a_slow_search_still_says_it_is_alive():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress("searching", 1000, "q", out, heartbeat_s=10.0, clock=clock)
    for spent in range(1, 30):  # 29 s, stuck below the first tenth
        clock.now += 1.0
        p.update(spent, 1000, "round 1/5")
    assert out.getvalue().splitlines() == [
        "searching: 10/1,000 q (1%), round 1/5",
        "searching: 20/1,000 q (2%), round 1/5",
    ]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_redrawing_bar_and_a_pipe_does_not():
    tty, pipe = _Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = progress("searching", 100, "q", stream)
        p.update(50, 100, "round 1/2")
        p.close()
    assert "\r" in tty.getvalue() and "50/100" in tty.getvalue()
    assert "\r" not in pipe.getvalue() and "50/100 q (50%)" in pipe.getvalue()


def test_demo_progress_in_a_log_is_plain_lines(tmp_path):
    out = subprocess.run(
        [
            sys.executable, "-m", "gemfinder", "demo", "--models", "30", "--items", "150",
            "--per-model", "10", "--endpoints", "2", "--workdir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "\r" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("searching: ")]
    assert 1 <= len(lines) <= 12, out.stderr
    assert len(set(lines)) == len(lines) and " q (" in lines[-1]
