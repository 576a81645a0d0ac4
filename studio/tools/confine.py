"""Child side: the limits a sandboxed interpreter puts on itself before any user code runs."""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
import sys

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, CAP_VERSION_3 = 24, 47, 4, 0x20080522
# files outside the Python install that Python, numpy or matplotlib read at run time
SYSTEM_READABLE = ("/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types",
                   "/dev/urandom", "/dev/random", "/dev/zero", "/sys/devices/system/cpu", "/proc/self")
SYSTEM_WRITABLE = ("/dev/null",)


def set_limits(config: dict) -> None:
    """Memory, file size, open files, no core dumps; the CPU budget is set per call by the parent."""
    resource.setrlimit(resource.RLIMIT_AS, (config["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (config["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def leave_network() -> None:
    """Move into an empty network namespace (as root directly, otherwise inside a user namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}")


class CapHeader(ctypes.Structure):
    """struct __user_cap_header_struct."""

    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


def drop_capabilities() -> None:
    """Give up every capability (a studio run as root would otherwise hand them all to the code)."""
    from studio.tools import seccomp

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM without CAP_SETPCAP, EINVAL past the last: both fine
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable for both 32-bit halves: all zero
    if libc.syscall(seccomp.syscall_number("capset"), ctypes.byref(CapHeader(CAP_VERSION_3, 0)), data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"capset: {os.strerror(code)}")


def within(path: str, root: str) -> bool:
    """True when `path` is `root` or lies beneath it (after resolving links)."""
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def python_paths(entries: list[str], private: list[str]) -> list[str]:
    """The Python install and import path the code must keep reading, less any folder holding a private one
    (a data dir inside a checkout on sys.path would otherwise become readable)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *entries}
    keep = {r for r in roots if r and os.path.isdir(r) and not any(within(p, r) for p in private)}
    return sorted(keep)


def attempt(name: str, step, active: list[str], missing: dict[str, str]) -> bool:
    """Run one protection step, noting it as active or why it is missing."""
    try:
        extra = step()
    except (OSError, ValueError, AttributeError) as exc:
        missing[name] = str(exc) or type(exc).__name__
        return False
    active.extend(extra if isinstance(extra, list) else [name])
    return True


def apply(config: dict, folder: str) -> tuple[list[str], dict[str, str]]:
    """Apply every protection this machine offers; returns (active names, missing name -> reason)."""
    from studio.tools import landlock, seccomp

    active, missing = ["separate process"], {}
    attempt("rlimits", lambda: set_limits(config), active, missing)
    attempt("no network (namespace)", leave_network, active, missing)
    attempt("no capabilities", drop_capabilities, active, missing)
    home = pwd.getpwuid(os.getuid()).pw_dir
    readable = python_paths(sys.path, [folder, home]) + list(SYSTEM_READABLE)
    writable = [folder, *SYSTEM_WRITABLE]
    attempt("filesystem (landlock)", lambda: landlock.restrict(readable, writable),
            active, missing)
    if attempt("seccomp", seccomp.install, active, missing):
        active.remove("seccomp")
        active += ["no network (seccomp)", "no programs (seccomp)"]
    return active, missing
