"""The seccomp filter: syscall numbers agree with the kernel headers, the BPF program is well
formed, and the kernel enforces it on a process of its own (outside the full sandbox)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from gemfinder.tasks import _sandbox_seccomp as seccomp

HEADERS = {
    0: Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    1: Path("/usr/include/asm-generic/unistd.h"),  # aarch64 uses the generic table
}


@pytest.mark.parametrize("column", sorted(HEADERS))
def test_numbers_match_the_kernel_headers(column):
    header = HEADERS[column]
    if not header.exists():
        pytest.skip(f"{header} not installed (Debian: linux-libc-dev)")
    text = header.read_text()
    for name, numbers in seccomp.SYSCALLS.items():
        match = re.search(rf"^#define __NR(?:3264)?_{name}\s+(\d+)", text, re.MULTILINE)
        assert match, name
        assert int(match.group(1)) == numbers[column], name


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_program_is_well_formed(machine):
    code = seccomp.build(machine)
    assert len(code) % 8 == 0 and len(code) // 8 < 256
    instructions = [struct.unpack("=HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]
    for index, (op, jt, jf, _) in enumerate(instructions):
        if op & 0x07 == 0x05:  # BPF_JMP: both targets inside the program
            assert index + 1 + max(jt, jf) < len(instructions)
    assert instructions[-1][0] == seccomp.RET  # falls off nowhere
    assert seccomp.build("sparc") is None


def _filtered(body: str) -> subprocess.CompletedProcess:
    prelude = (
        "import ctypes, sys\n"
        f"sys.path.insert(0, {str(Path(seccomp.__file__).parent)!r})\n"
        "import _sandbox_seccomp as s\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.prctl(38, 1, 0, 0, 0) == 0\n"  # no_new_privs
        "assert s.install(libc)\n"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", prelude + body], capture_output=True, text=True, timeout=30
    )


def test_kernel_enforces_the_filter():
    body = """
import errno, os, socket, threading
libc_errno = ctypes.get_errno
assert libc.unshare(0x10000000) == -1 and libc_errno() == errno.EPERM
assert libc.syscall(425, 8, ctypes.create_string_buffer(120)) == -1
assert libc.syscall(435, 0, 0) == -1 and libc_errno() == errno.ENOSYS  # clone3
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raise SystemExit("inet socket allowed")
except PermissionError:
    pass
a, b = socket.socketpair()  # AF_UNIX stays
t = threading.Thread(target=lambda: None); t.start(); t.join()  # clone3 -> clone fallback
pid = os.fork()
if pid == 0:
    os._exit(7)
assert os.waitpid(pid, 0)[1] >> 8 == 7
try:
    os.kill(os.getpid(), 19)
    raise SystemExit("SIGSTOP allowed")
except PermissionError:
    pass
print("ok")
"""
    out = _filtered(body)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_other_syscall_abi_is_killed():
    if seccomp.platform.machine() != "x86_64":
        pytest.skip("x32 check is x86_64 only")
    # getpid through the x32 ABI (nr | 0x40000000): the whole process is killed (SIGSYS).
    out = _filtered("libc.syscall(0x40000000 | 39)\nprint('survived')\n")
    assert out.returncode == -31 and "survived" not in out.stdout
