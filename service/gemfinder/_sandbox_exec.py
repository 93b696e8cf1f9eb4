"""Trusted launcher for one sandboxed program (run as `python -I -S _sandbox_exec.py CONFIG`).

It applies the isolation the kernel allows (namespaces, private /tmp and /proc, an unprivileged
uid, no_new_privs, rlimits), reports the layers that took effect on a status pipe, then execs
the untrusted interpreter. It exists so that the parent never needs subprocess's preexec_fn,
which is unsafe in threaded programs.
"""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

libc = ctypes.CDLL(None, use_errno=True)


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def enter_namespaces(layers):
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0 or libc.unshare(flags) != 0:
        # Without root, a user namespace grants the right to create the others.
        if libc.unshare(flags | CLONE_NEWUSER) != 0:
            return False
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"0 {uid} 1")
        write_file("/proc/self/gid_map", f"0 {gid} 1")
        layers.append("user_namespace")
    layers += ["net_namespace", "pid_namespace", "ipc_namespace", "mount_namespace"]
    libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    here = os.open(".", os.O_RDONLY)
    hidden = 0
    for path in (b"/tmp", b"/var/tmp", b"/dev/shm"):
        if os.path.isdir(path):
            opts = b"size=16m,mode=1777"
            hidden += libc.mount(b"tmpfs", path, b"tmpfs", MS_NOSUID | MS_NODEV, opts) == 0
    if hidden:
        layers.append("private_tmp")
    # The work directory may live under /tmp, now covered: keep it through the open fd.
    os.fchdir(here)
    os.close(here)
    return True


def child(cfg, layers, status):
    """Runs as pid 1 of the new pid namespace (if any); never returns."""
    if "pid_namespace" in layers:
        # A fresh /proc shows only the sandbox's own processes (no parent environ to read).
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        if libc.mount(b"proc", b"/proc", b"proc", flags, None) == 0:
            layers.append("private_proc")
    uid = cfg.get("uid")
    if uid is not None and os.geteuid() == 0 and "user_namespace" not in layers:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        layers.append("unprivileged_user")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        layers.append("no_new_privs")
    for name, value in cfg["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    layers.append("rlimits")
    # Dies with the launcher, which the parent kills on timeout; pid 1 dying ends the namespace.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    status.write(json.dumps(layers))
    status.close()
    # The program arrives on stdin: its directory's path may be hidden under the private /tmp.
    os.execve(cfg["python"], [cfg["python"], "-I", "-"], {})


def main():
    cfg = json.loads(sys.argv[1])
    status = os.fdopen(cfg["status_fd"], "w")
    program = os.open(cfg["program"], os.O_RDONLY)
    os.dup2(program, 0)
    os.close(program)
    layers = []
    if cfg.get("namespaces", True):
        enter_namespaces(layers)
    pid = os.fork()
    if pid == 0:
        try:
            child(cfg, layers, status)
        except BaseException as err:  # noqa: BLE001 - report any setup failure, then die
            os.write(2, f"sandbox setup failed: {err!r}\n".encode())
        os._exit(125)
    status.close()
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
