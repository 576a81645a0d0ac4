"""Listing a repository's files, sizes and hashes on Hugging Face or ModelScope, over their HTTP APIs.

The hub APIs are called directly (not through huggingface_hub): the studio keeps HF_HUB_OFFLINE=1 for
everything else, which makes huggingface_hub refuse every request, and an explicit download must work anyway."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlsplit

import httpx

from studio.errors import InputError
from studio.hub.download_errors import (
    DownloadError,
    bad_listing,
    no_network,
    not_found,
    private_repo,
)
from studio.hub.download_folder import MARKER, PARTIAL_DIR

REPO_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
MAX_FILES = 100_000
MS_DEFAULT_REVISION = "master"  # ModelScope's default branch; "main" (our default) means it there


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository as the hub lists it."""

    path: str
    size: int
    sha256: str = ""  # LFS files on Hugging Face, every file on ModelScope
    git_sha1: str = ""  # small files on Hugging Face: the git blob id

    @property
    def hash_kind(self) -> str:
        """Which hash verifies the file ("" when the hub gave none)."""
        return "sha256" if self.sha256 else ("git-sha1" if self.git_sha1 else "")


@dataclass(frozen=True)
class Listing:
    """A repository at one revision: the commit it resolved to and its files."""

    revision: str
    files: tuple[RemoteFile, ...]


def check_repo(source: str, repo: str) -> None:
    """Refuse a repository name that no hub would have (and that could escape a folder)."""
    if not REPO_RE.match(repo or "") or ".." in repo or (source == "modelscope" and "/" not in repo):
        raise InputError(f"{repo!r} is not a repository name.",
                         "Write it as owner/name, as on the model's page, e.g. internlm/internlm2_5-7b-chat.")


def safe_path(rel: object) -> bool:
    """Whether a path from a listing stays inside the destination folder and is not ours."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts) and parts[0] not in (MARKER, PARTIAL_DIR)


def ms_revision(revision: str) -> str:
    """The ModelScope revision for ours."""
    return MS_DEFAULT_REVISION if revision in ("", "main") else revision


def file_url(source: str, endpoint: str, repo: str, revision: str, rel: str) -> tuple[str, dict]:
    """The URL (and query) that serves one file's bytes, honouring Range."""
    if source == "modelscope":
        return f"{endpoint}/api/v1/models/{repo}/repo", {"Revision": revision, "FilePath": rel}
    return f"{endpoint}/{repo}/resolve/{quote(revision, safe='')}/{quote(rel)}", {}


def connection_error(exc: Exception, url: str, source: str) -> DownloadError:
    """A transport failure put in words: no network / name not resolved, refused, or timed out."""
    host = urlsplit(url).hostname or url
    cause = exc.__cause__ or exc.__context__
    text = f"{exc} {cause}".lower()
    if isinstance(cause, socket.gaierror) or "name or service not known" in text or "name resolution" in text \
            or "nodename nor servname" in text:
        return no_network(host, source, "the name does not resolve (no network, or no DNS)", retry=False)
    if isinstance(exc, httpx.TimeoutException):
        return no_network(host, source, "it did not answer in time")
    if isinstance(exc, httpx.ConnectError):
        return no_network(host, source, f"the connection failed ({exc or 'refused'})")
    return no_network(host, source, str(exc) or type(exc).__name__)


def check_status(resp: httpx.Response, source: str, repo: str, revision: str) -> None:
    """Raise the matching message for a refusal; 5xx and 429 are left to the caller's retries."""
    if resp.status_code in (401, 403):
        raise private_repo(source, repo, resp.status_code)
    if resp.status_code == 404:
        raise not_found(source, repo, revision)


def _get_json(client: httpx.Client, url: str, source: str, repo: str, revision: str, headers: dict,
              params: Optional[dict] = None):
    try:
        resp = client.get(url, params=params, headers=headers)
    except httpx.TransportError as exc:
        raise connection_error(exc, url, source) from None
    check_status(resp, source, repo, revision)
    if resp.status_code >= 400:
        raise DownloadError(f"{urlsplit(url).hostname} answered HTTP {resp.status_code} to the file list of {repo}.",
                            "The hub may be busy: try again in a minute.", "dl_hub_error", {"repo": repo}, retry=True)
    try:
        return resp.json(), resp
    except ValueError:
        raise bad_listing(source, repo, "not JSON") from None


def list_files(client: httpx.Client, source: str, endpoint: str, repo: str, revision: str,
               headers: dict) -> Listing:
    """Every file of `repo` at `revision`, with sizes and hashes; the revision pinned to a commit where possible."""
    if source == "modelscope":
        return _list_modelscope(client, endpoint, repo, ms_revision(revision), headers)
    return _list_hf(client, endpoint, repo, revision, headers)


def _list_hf(client: httpx.Client, endpoint: str, repo: str, revision: str, headers: dict) -> Listing:
    info, _ = _get_json(client, f"{endpoint}/api/models/{repo}/revision/{quote(revision, safe='')}",
                        "huggingface", repo, revision, headers)
    sha = info.get("sha") if isinstance(info, dict) else None
    pinned = sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha) else revision
    files: list[RemoteFile] = []
    url: Optional[str] = f"{endpoint}/api/models/{repo}/tree/{quote(pinned, safe='')}"
    params: Optional[dict] = {"recursive": "true", "expand": "false"}
    while url:
        entries, resp = _get_json(client, url, "huggingface", repo, revision, headers, params)
        if not isinstance(entries, list):
            raise bad_listing("huggingface", repo, "the tree is not a list")
        files.extend(_hf_file(e, repo) for e in entries if isinstance(e, dict) and e.get("type") == "file")
        if len(files) > MAX_FILES:
            raise bad_listing("huggingface", repo, f"more than {MAX_FILES} files")
        url, params = resp.links.get("next", {}).get("url"), None  # the tree is paged through the Link header
    return Listing(pinned, tuple(files))


def _hf_file(entry: dict, repo: str) -> RemoteFile:
    lfs = entry.get("lfs") if isinstance(entry.get("lfs"), dict) else {}
    rel, size = entry.get("path"), lfs.get("size", entry.get("size"))
    if not safe_path(rel) or not isinstance(size, int) or size < 0:
        raise bad_listing("huggingface", repo, f"a file entry is invalid ({str(rel)[:80]!r})")
    if lfs:
        return RemoteFile(rel, size, sha256=str(lfs.get("oid", "")).lower())
    return RemoteFile(rel, size, git_sha1=str(entry.get("oid", "")).lower())


def _list_modelscope(client: httpx.Client, endpoint: str, repo: str, revision: str, headers: dict) -> Listing:
    body, _ = _get_json(client, f"{endpoint}/api/v1/models/{repo}/repo/files", "modelscope", repo, revision,
                        headers, {"Revision": revision, "Recursive": "true"})
    if not isinstance(body, dict):
        raise bad_listing("modelscope", repo, "not an object")
    code = body.get("Code", 200)
    if code in (401, 403):
        raise private_repo("modelscope", repo, code)
    message = str(body.get("Message", "")).lower()
    if code == 404 or (code != 200 and ("not exist" in message or "不存在" in message)):
        raise not_found("modelscope", repo, revision)
    entries = (body.get("Data") or {}).get("Files") if isinstance(body.get("Data"), dict) else None
    if code != 200 or not isinstance(entries, list):
        raise bad_listing("modelscope", repo, f"code {code}: {str(body.get('Message', ''))[:120]}")
    files = []
    for e in entries:
        if not isinstance(e, dict) or e.get("Type") == "tree":
            continue
        rel, size = e.get("Path"), e.get("Size")
        if not safe_path(rel) or not isinstance(size, int) or size < 0:
            raise bad_listing("modelscope", repo, f"a file entry is invalid ({str(rel)[:80]!r})")
        files.append(RemoteFile(rel, size, sha256=str(e.get("Sha256") or "").lower()))
    return Listing(revision, tuple(files[:MAX_FILES + 1]))
