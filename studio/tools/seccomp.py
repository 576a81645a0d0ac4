"""A seccomp filter through the system libseccomp (ctypes): no sockets, no new programs, no new processes."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

ACT_ALLOW = 0x7FFF0000
CMP_MASKED_EQ = 7
CLONE_THREAD = 0x00010000

NETWORK = ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4")
PROGRAMS = ("execve", "execveat", "fork", "vfork")
# Landlock does not cover metadata: without these, code running as root could chmod/chown any file
METADATA = ("chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "setxattr", "lsetxattr",
            "removexattr", "lremovexattr", "mknod", "mknodat")
# escapes from the other limits: changing rlimits, namespaces, tracing, io_uring (it can open sockets itself)
OTHERS = ("setrlimit", "prlimit64", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "ptrace",
          "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "io_uring_setup", "keyctl",
          "add_key", "request_key", "kexec_load", "init_module", "finit_module", "delete_module", "reboot",
          "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at", "sethostname", "setdomainname",
          "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", "syslog", "quotactl",
          "acct", "userfaultfd", "fanotify_init", "fsopen", "fsmount", "fspick", "open_tree", "move_mount",
          "mount_setattr")


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def errno_action(code: int) -> int:
    """SCMP_ACT_ERRNO(code)."""
    return 0x00050000 | (code & 0xFFFF)


def load_library() -> ctypes.CDLL:
    """libseccomp.so.2, or OSError saying it is missing."""
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def syscall_number(name: str) -> int:
    """This architecture's number for a syscall (negative when it has none)."""
    return load_library().seccomp_syscall_resolve_name(name.encode())


def add_rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *cmps: ArgCmp) -> None:
    """Add one rule; a syscall this architecture does not have is skipped."""
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        return
    array = (ArgCmp * len(cmps))(*cmps) if cmps else None
    rc = lib.seccomp_rule_add_array(ctypes.c_void_p(ctx), action, number, len(cmps), array)
    if rc < 0:
        raise OSError(-rc, f"seccomp rule for {name}: {errno.errorcode.get(-rc, rc)}")


def install() -> None:
    """Load the filter into this process (and its threads to come); OSError when it cannot."""
    lib = load_library()
    ctx = lib.seccomp_init(ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        for name in NETWORK + PROGRAMS + METADATA + OTHERS:
            add_rule(lib, ctx, errno_action(errno.EPERM), name)
        # clone3 hides its flags in memory seccomp cannot read: ENOSYS makes glibc fall back to clone
        add_rule(lib, ctx, errno_action(errno.ENOSYS), "clone3")
        # threads (CLONE_THREAD) may start, new processes may not
        add_rule(lib, ctx, errno_action(errno.EPERM), "clone", ArgCmp(0, CMP_MASKED_EQ, CLONE_THREAD, 0))
        rc = lib.seccomp_load(ctypes.c_void_p(ctx))
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {errno.errorcode.get(-rc, rc)}")
    finally:
        lib.seccomp_release(ctypes.c_void_p(ctx))
