"""Trusted launcher for one sandboxed program (run as `python -I -S _sandbox_exec.py CONFIG`).

It applies the isolation the kernel allows (a cgroup, namespaces, private size-capped tmpfs for
the work directory and every shared writable path, an unprivileged uid, no_new_privs, rlimits,
Landlock, seccomp), reports the layers that took effect on a status pipe, then execs the
untrusted interpreter. It exists so that the parent never needs subprocess's preexec_fn, which
is unsafe in threaded programs. Stdlib only; its two helper modules are loaded by path (under
-I the script's directory is not on sys.path).

Lifetime: the launcher leads the run's session and process group, and the program cannot leave
that group (seccomp denies setsid/setpgid). When the grader dies, even by SIGKILL, the kernel
sends the launcher SIGTERM (PR_SET_PDEATHSIG), and the launcher kills the whole group.
"""

import ctypes
import importlib.util
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# World-writable places a program could use to leave files for a later run (or fill a disk).
SHARED_WRITABLE = (b"/tmp", b"/var/tmp", b"/dev/shm", b"/run/lock", b"/var/lock", b"/dev/mqueue")

libc = ctypes.CDLL(None, use_errno=True)
HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Loaded now: once Landlock is on, their files (and the stdlib's lazy imports) may be unreadable.
LANDLOCK, SECCOMP = load("_sandbox_landlock"), load("_sandbox_seccomp")


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def kill_group(*_):
    os.killpg(os.getpgid(0), signal.SIGKILL)


def die_with_grader(grader_pid):
    """SIGTERM when the grader (the thread that started us) dies; then kill the whole group."""
    signal.signal(signal.SIGTERM, kill_group)
    for sig in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != grader_pid:  # it died before prctl took effect
        kill_group()


def join_cgroups(paths, layers):
    """Enter the run's cgroup(s) before forking: the tree's memory and process count are capped."""
    if not paths:
        return False
    try:
        for path in paths:
            write_file(path, str(os.getpid()))
    except OSError as err:
        os.write(2, f"sandbox: cgroup not joined: {err}\n".encode())
        return False
    layers.append("cgroup")
    return True


def enter_namespaces(cfg, layers):
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
    tmpfs = MS_NOSUID | MS_NODEV
    # The work directory becomes a size-capped tmpfs that vanishes with the namespace: nothing
    # the program writes reaches the disk, or outlives the run.
    work = cfg["work_path"].encode()
    opts = f"size={cfg['disk_mb']}m,mode=0777".encode()
    if libc.mount(b"tmpfs", work, b"tmpfs", tmpfs, opts) == 0:
        os.chdir(work)
        layers.append("work_tmpfs")
    here = os.open(".", os.O_RDONLY)
    for path in SHARED_WRITABLE:
        if os.path.isdir(path) and not os.path.islink(path):
            if libc.mount(b"tmpfs", path, b"tmpfs", tmpfs, b"size=4m,mode=1777") == 0:
                cfg["private_dirs"].append(path.decode())
    if cfg["private_dirs"]:
        layers.append("private_tmp")
    # The work directory may live under /tmp, now covered: keep it through the open fd.
    os.fchdir(here)
    os.close(here)
    return True


def uid_tasks(uid):
    """Tasks (threads count) of a real uid: what RLIMIT_NPROC compares against."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total


def set_limits(cfg, layers):
    """Per-process rlimits. Without a cgroup the process count is capped small and the memory
    limit split between those processes, so the whole tree stays within memory_mb."""
    limits = dict(cfg["limits"])
    memory = cfg["memory_mb"] << 20
    if "cgroup" in layers:
        nproc = cfg["max_procs_cgroup"]
    else:
        allowance = cfg["max_procs"]
        memory //= allowance
        nproc = allowance
        if cfg["shared_uid"]:
            # RLIMIT_NPROC counts every task of the uid (the grader's too): allow this many
            # more than now, never more than the ceiling all runs of this grader share.
            nproc = min(uid_tasks(os.getuid()) + allowance - 1, cfg["nproc_ceiling"])
        layers.append("process_cap")
    limits["RLIMIT_AS"] = memory
    limits["RLIMIT_NPROC"] = nproc
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    layers.append("rlimits")


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
    set_limits(cfg, layers)
    if "no_new_privs" in layers:
        work = os.open(".", os.O_PATH | os.O_DIRECTORY)
        layers += LANDLOCK.restrict(libc, work, cfg["read_roots"], cfg["private_dirs"])
        os.close(work)
        if SECCOMP.install(libc):
            layers.append("seccomp")
    # Dies with the launcher, which the parent kills on timeout; pid 1 dying ends the namespace.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    status.write(json.dumps(layers))
    status.close()
    # The program arrives on stdin: its directory's path may be hidden under the private /tmp.
    os.execve(cfg["python"], [cfg["python"], "-I", "-"], {})


def main():
    cfg = json.loads(sys.argv[1])
    die_with_grader(cfg["grader_pid"])
    status = os.fdopen(cfg["status_fd"], "w")
    program = os.open(cfg["program"], os.O_RDONLY)
    os.dup2(program, 0)
    os.close(program)
    layers = []
    cfg["private_dirs"] = []  # shared writable paths replaced by a tmpfs of the run's own
    join_cgroups(cfg.get("cgroup_procs"), layers)
    if cfg.get("namespaces", True):
        enter_namespaces(cfg, layers)
    pid = os.fork()
    if pid == 0:
        try:
            for sig in (signal.SIGTERM, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(sig, signal.SIG_DFL)  # the program starts with the defaults
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
