"""The messages a download can end with: what went wrong and what to do, in English (the UI words them by key)."""

from __future__ import annotations

from studio.errors import StudioError

HUB_NAMES = {"huggingface": "Hugging Face", "modelscope": "ModelScope"}
RESUME_HINT = "The partial download is kept: start the same download again and it resumes."


class DownloadError(StudioError):
    """A download that cannot go on; `retry` says whether trying again may help (a dropped connection)."""

    def __init__(self, message: str, hint: str = "", key: str = "", values=None, retry: bool = False) -> None:
        super().__init__(message, hint, key, values)
        self.retry = retry


class Cancelled(Exception):
    """The user cancelled the download (or the studio is stopping): not an error."""


def _mirror_hint(source: str) -> str:
    if source == "modelscope":
        return "set downloads.modelscope_endpoint in the config or MODELSCOPE_ENDPOINT"
    return "set a mirror with --endpoint, downloads.hf_endpoint in the config or HF_ENDPOINT (e.g. https://hf-mirror.com)"


def no_network(host: str, source: str, detail: str, retry: bool = True) -> DownloadError:
    """The hub's host does not resolve or refuses connections."""
    return DownloadError(
        f"Cannot reach {host}: {detail}.",
        f"Check that this machine is online (try `curl -I https://{host}`), or {_mirror_hint(source)}.",
        "dl_no_network", {"host": host}, retry=retry)


def not_found(source: str, repo: str, revision: str) -> DownloadError:
    """The repository (or the revision) does not exist on the hub."""
    return DownloadError(
        f"{repo} (revision {revision}) was not found on {HUB_NAMES[source]}.",
        "Check the name (owner/name, as on the model's page) and the revision; the other hub may have it "
        "(--source huggingface or modelscope).",
        "dl_not_found", {"repo": repo, "hub": HUB_NAMES[source]})


def private_repo(source: str, repo: str, status: int) -> DownloadError:
    """401/403: the repository is private or gated, or the token is wrong."""
    if source == "modelscope":
        how = "set MODELSCOPE_API_TOKEN (or downloads.modelscope_token in the config) to your ModelScope access token"
    else:
        how = ("log in with `hf auth login` or set HF_TOKEN (or downloads.hf_token in the config), and accept the "
               "model's terms on its page if it is gated")
    return DownloadError(
        f"{repo} on {HUB_NAMES[source]} is private or gated (HTTP {status}): this login may not download it.",
        f"To download it, {how}.", "dl_private", {"repo": repo, "hub": HUB_NAMES[source]})


def dropped(host: str, path: str, attempts: int, detail: str) -> DownloadError:
    """The connection kept failing after every retry."""
    return DownloadError(
        f"The connection to {host} kept dropping while fetching {path} ({attempts} attempts; last: {detail}).",
        RESUME_HINT, "dl_dropped", {"host": host, "file": path}, retry=True)


def disk_full(folder: str, needed: int, free: int) -> DownloadError:
    """Not enough free space for what is left to fetch (checked before, or ENOSPC mid-file)."""
    return DownloadError(
        f"The disk holding {folder} is full: {human_bytes(needed)} more are needed, {human_bytes(free)} are free.",
        f"Free some space or choose another destination (--dest). {RESUME_HINT}",
        "dl_disk_full", {"folder": folder, "needed": human_bytes(needed), "free": human_bytes(free)})


def hash_mismatch(path: str, kind: str) -> DownloadError:
    """A file's bytes did not match its published hash twice in a row."""
    return DownloadError(
        f"{path} does not match its published {kind} hash, even after fetching it again.",
        "The hub or a proxy/mirror in between is serving damaged data: try again later or use another endpoint.",
        "dl_hash_mismatch", {"file": path})


def bad_listing(source: str, repo: str, detail: str) -> DownloadError:
    """The hub answered the file listing with something unusable."""
    return DownloadError(f"{HUB_NAMES[source]} gave an unusable file list for {repo}: {detail}.",
                         "Check the endpoint: it must be a Hugging Face or ModelScope hub (or a mirror of one).",
                         "dl_bad_listing", {"repo": repo})


def cannot_write(path: str, detail: str) -> DownloadError:
    """The destination cannot be written (permissions, a file in the way)."""
    return DownloadError(f"Cannot write {path}: {detail}.", "Choose a destination folder you can write to (--dest).",
                         "dl_cannot_write", {"path": path})


def human_bytes(n: int) -> str:
    """1536 → '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
