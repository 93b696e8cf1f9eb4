"""Landlock for sandboxed programs: file access, TCP and signals confined without privileges.

Loaded by _sandbox_exec.py (stdlib only). Landlock needs neither root nor namespaces, so it is
what confines a program where the kernel refuses namespaces and the grader is not root (the
executor's configuration in k8s/): the program may

- read and execute only beneath the system and interpreter directories it is given (not /proc,
  /sys, /tmp, /home, /root, nor wherever the service keeps its store);
- write, create and delete only beneath its own work directory (not /tmp, /dev/shm, /run/lock);
- neither connect nor bind TCP (ABI 4), nor signal processes or reach abstract unix sockets
  outside itself (ABI 6: the grader, the server and other runs are out of reach).

Each feature is used when the kernel's Landlock ABI has it; `restrict` returns the layers that
took effect, and nothing when Landlock is missing or refused (e.g. by a seccomp profile).
"""

import ctypes
import os

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # same on every arch
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1, 2, 4, 8
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 16, 32, 64, 128, 256
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 512, 1024, 2048, 4096
REFER, TRUNCATE, IOCTL_DEV = 8192, 16384, 32768
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

READ = EXECUTE | READ_FILE | READ_DIR
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # rights a file rule may hold


def _fs_rights(abi):
    rights = (MAKE_SYM << 1) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version(libc):
    return libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), CREATE_RULESET_VERSION)


def restrict(libc, work_fd, read_roots, private_dirs=(), rw_files=("/dev/null",)):
    """Confine this process and its future children; returns the layers that took effect.

    work_fd: an open directory the program may change freely; private_dirs: more such
    directories (the run's own tmpfs mounts); read_roots: paths it may read and execute
    beneath; rw_files: single files it may also write (e.g. /dev/null). Needs no_new_privs.
    """
    abi = abi_version(libc)
    if abi < 1:
        return []
    fs = _fs_rights(abi)
    attr = _RulesetAttr(fs, 0, 0)
    size = 8
    layers = ["landlock_fs"]
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
        layers.append("landlock_net")
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
        layers.append("landlock_scope")
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return []
    try:
        free = fs & ~(MAKE_CHAR | MAKE_BLOCK | MAKE_SOCK | MAKE_FIFO)
        rules = [(work_fd, free)]
        opened = []
        for path in private_dirs:
            opened.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
            rules.append((opened[-1], free))
        for path in read_roots:
            try:
                opened.append(os.open(path, os.O_PATH | os.O_CLOEXEC))
            except OSError:
                continue
            is_dir = os.path.isdir(path)
            rules.append((opened[-1], READ if is_dir else READ & FILE_RIGHTS))
        for path in rw_files:
            try:
                opened.append(os.open(path, os.O_PATH | os.O_CLOEXEC))
            except OSError:
                continue
            rules.append((opened[-1], (READ_FILE | WRITE_FILE) & fs))
        try:
            for fd, allowed in rules:
                rule = _PathBeneath(allowed & fs, fd)
                if libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                    return []
        finally:
            for fd in opened:
                os.close(fd)
        if libc.syscall(SYS_RESTRICT_SELF, ruleset, 0) != 0:
            return []
    finally:
        os.close(ruleset)
    return layers
