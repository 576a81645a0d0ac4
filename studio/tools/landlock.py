"""Landlock through raw syscalls (ctypes): read the Python install, read-write one folder, nothing else."""

from __future__ import annotations

import ctypes
import os

# syscall numbers are the same on every architecture (the generic table)
CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
MAKE_CHAR, MAKE_SOCK, MAKE_BLOCK, MAKE_SYM = 1 << 6, 1 << 9, 1 << 11, 1 << 12
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
# never granted, even in the writable folder: device nodes would reach the raw disk, symlinks could lure the
# studio (which reads the folder) elsewhere, sockets have no use there
WITHHELD = MAKE_CHAR | MAKE_BLOCK | MAKE_SYM | MAKE_SOCK
NET_TCP = (1 << 0) | (1 << 1)  # bind and connect (ABI 4)
SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets and signals outside the sandbox (ABI 6)


class RulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr (its size tells the kernel which fields we know)."""

    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class PathBeneath(ctypes.Structure):
    """struct landlock_path_beneath_attr (packed)."""

    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def libc() -> ctypes.CDLL:
    """The C library, with errno."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib


def abi_version() -> int:
    """The kernel's Landlock ABI (0 when it has none or it is disabled)."""
    version = libc().syscall(CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(version), 0)


def fs_rights(abi: int) -> int:
    """Every filesystem right the kernel knows at this ABI."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def check(result: int, what: str) -> int:
    """Raise OSError for a failed syscall."""
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def allow(lib: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    """Allow `rights` beneath `path` (a file gets only its file rights); a missing path is skipped."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS
        rule = PathBeneath(rights, fd)
        check(lib.syscall(ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0), f"landlock rule {path}")
    finally:
        os.close(fd)


def restrict(readable: list[str], writable: list[str]) -> list[str]:
    """Confine this process; returns the protections it gives; OSError when it cannot."""
    abi = abi_version()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel (it needs Linux 5.13+ with Landlock enabled)")
    lib, everything = libc(), fs_rights(abi)
    attr = RulesetAttr(everything, NET_TCP if abi >= 4 else 0, SCOPE_ALL if abi >= 6 else 0)
    size = ctypes.sizeof(RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = check(lib.syscall(CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "landlock ruleset")
    try:
        for path in readable:
            allow(lib, ruleset, path, EXECUTE | READ_FILE | READ_DIR)
        for path in writable:
            allow(lib, ruleset, path, everything & ~WITHHELD)
        check(lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        check(lib.syscall(RESTRICT_SELF, ruleset, 0), "landlock restrict_self")
    finally:
        os.close(ruleset)
    return (["filesystem (landlock)"] + (["no TCP (landlock)"] if abi >= 4 else [])
            + (["no signals outside (landlock)"] if abi >= 6 else []))
