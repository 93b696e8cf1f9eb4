"""Seccomp deny-list for sandboxed programs, as a classic BPF program installed with prctl.

Loaded by _sandbox_exec.py (stdlib only: the launcher runs under `python -I -S`). The filter is
applied in the launcher's child just before it execs the untrusted interpreter, and survives the
exec. It denies (EPERM) what a test program never needs and an escape often does:

- new namespaces (unshare, setns, clone with CLONE_NEW* flags; clone3 gets ENOSYS so libc falls
  back to clone, whose flags the filter can read), mount and friends, chroot, pivot_root;
- io_uring (it can open sockets and files behind the filter's back), the kernel keyring, bpf,
  perf_event_open, userfaultfd, ptrace and process_vm_*, kcmp, pidfd_getfd, module and kexec
  loading, open_by_handle_at;
- leaving the run's process group (setsid, setpgid): the grader kills that group, so no process
  of the program can outlive the run;
- sockets other than AF_UNIX (no TCP/UDP where no network namespace is available);
- SIGSTOP to anyone (a stopped launcher could not clean up when its grader dies).

Another ABI (i386 `int 0x80` on x86_64, x32) is killed outright: its syscall numbers differ.
"""

import ctypes
import platform
import struct

# name: (x86_64 number, asm-generic number used by aarch64); checked against the kernel
# headers by tests/test_sandbox_seccomp.py where they are installed.
SYSCALLS = {
    "unshare": (272, 97),
    "setns": (308, 268),
    "clone": (56, 220),
    "clone3": (435, 435),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "open_by_handle_at": (304, 265),
    "kcmp": (312, 272),
    "pidfd_getfd": (438, 438),
    "setsid": (112, 157),
    "setpgid": (109, 154),
    "socket": (41, 198),
    "kill": (62, 129),
    "tkill": (200, 130),
    "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    "pidfd_send_signal": (424, 424),
}
# Syscalls that send a signal, with the index of their signal argument.
SIGNAL_ARG = {
    "kill": 1,
    "tkill": 1,
    "tgkill": 2,
    "rt_sigqueueinfo": 1,
    "rt_tgsigqueueinfo": 2,
    "pidfd_send_signal": 1,
}
CHECKED = ("clone", "clone3", "socket", *SIGNAL_ARG)
DENIED = [n for n in SYSCALLS if n not in CHECKED]

ARCHES = {"x86_64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1)}  # AUDIT_ARCH_*, table column
X32_SYSCALL_BIT = 0x40000000
CLONE_NEW_FLAGS = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
AF_UNIX, SIGSTOP, EPERM, ENOSYS = 1, 19, 1, 38

RET_ALLOW, RET_KILL = 0x7FFF0000, 0x80000000  # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
RET_ERRNO = 0x00050000
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
OFF_NR, OFF_ARCH = 0, 4


def _arg(i):
    return 16 + 8 * i  # low 32 bits of args[i] in struct seccomp_data (little-endian)


def build(machine=None):
    """The filter as bytes of struct sock_filter, or None on an architecture it does not know."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        return None
    audit_arch, column = ARCHES[machine]
    nr = {name: numbers[column] for name, numbers in SYSCALLS.items()}
    # Instructions as (code, jt, jf, k); jt/jf may name a label, resolved once all are placed.
    prog, labels = [], {}  # labels: syscall names (argument checks) and return actions

    def op(code, k, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    op(LD_ABS, OFF_ARCH)
    op(JEQ, audit_arch, 0, "kill_process")
    op(LD_ABS, OFF_NR)
    if machine == "x86_64":
        op(JGE, X32_SYSCALL_BIT, "kill_process", 0)
    for name in DENIED:
        op(JEQ, nr[name], "deny", 0)
    op(JEQ, nr["clone3"], "enosys", 0)
    op(JEQ, nr["clone"], "clone", 0)
    op(JEQ, nr["socket"], "socket", 0)
    for name in SIGNAL_ARG:
        op(JEQ, nr[name], name, 0)
    op(RET, RET_ALLOW)
    labels["clone"] = len(prog)
    op(LD_ABS, _arg(0))
    op(JSET, CLONE_NEW_FLAGS, "deny", "allow")
    labels["socket"] = len(prog)
    op(LD_ABS, _arg(0))
    op(JEQ, AF_UNIX, "allow", "deny")
    for name, index in SIGNAL_ARG.items():
        labels[name] = len(prog)
        op(LD_ABS, _arg(index))
        op(JEQ, SIGSTOP, "deny", "allow")
    for label, ret in (
        ("allow", RET_ALLOW),
        ("deny", RET_ERRNO | EPERM),
        ("enosys", RET_ERRNO | ENOSYS),
        ("kill_process", RET_KILL),
    ):
        labels[label] = len(prog)
        op(RET, ret)
    out = b""
    for i, (code, jt, jf, k) in enumerate(prog):
        # Jumps are relative to the next instruction and only go forward.
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        assert 0 <= jt < 256 and 0 <= jf < 256
        out += struct.pack("=HBBI", code, jt, jf, k)
    return out


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def install(libc):
    """Apply the filter to this thread and its future children; True if the kernel took it.

    Needs no_new_privs (or CAP_SYS_ADMIN) first. A multi-threaded caller would have to sync
    threads; the launcher's child is single-threaded.
    """
    code = build()
    if code is None:
        return False
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    ul = ctypes.c_ulong
    return (
        libc.prctl(ul(PR_SET_SECCOMP), ul(SECCOMP_MODE_FILTER), ctypes.byref(prog), ul(0), ul(0))
        == 0
    )
