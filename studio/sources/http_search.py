"""An HTTP image-search service as a source of candidates; off unless configured, never fatal.

The service is asked with GET on `url_template`, where `{query}` becomes the URL-encoded caption and
`{k}` (optional) the number of pictures wanted. It must answer JSON, either a list of image URLs

    ["https://images.example/a.jpg", "https://images.example/b.png"]

or an object whose "images" list holds {"url": ..., "caption": ..., "score": ...} (caption and score
optional: the caption is informational, a numeric score becomes the candidate's score, else 0;
relative URLs are resolved against the search URL). Each picture is downloaded (http/https
only, a byte cap, Content-Type image/*, few redirects), checked by `load_image` and kept as PNG or
JPEG in the cache folder under a hash of its URL. Whatever fails is dropped and reported by
`last_warnings()`; the search itself never raises for network trouble.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import quote, urljoin, urlsplit

import httpx

from studio.config import url_template_problem
from studio.core.article import Candidate
from studio.errors import ConfigError, InputError
from studio.images import load_image
from studio.sources.base import atomic_write, require_caption

MAX_JSON_BYTES = 2 * 1024 * 1024
MAX_REDIRECTS = 3
MAX_QUERY_CHARS = 200  # search services cut long queries anyway; the official demo sent 53 characters


class _Problem(Exception):
    """Why one request was given up, phrased to follow "image search at HOST …"."""


@dataclass(frozen=True)
class _Hit:
    url: str
    score: float


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def _host(url: str) -> str:
    """Host and port only: never the user:password part or a query string holding a key."""
    parts = urlsplit(url)
    return (parts.hostname or "?") + (f":{parts.port}" if parts.port else "")


class HttpImageSearch:
    """Candidates from a remote image-search service (see the module docstring for the protocol)."""

    def __init__(self, url_template: str, cache_dir: Path, timeout_s: float = 5.0,
                 max_bytes: int = 10 * 1024 * 1024, max_results: int = 4,
                 headers: Optional[Mapping[str, str]] = None, name: str = "http") -> None:
        problem = url_template_problem(url_template)
        if problem:
            raise ConfigError(f"{name}: url_template {url_template!r}: {problem}")
        self.name = name
        self.url_template = url_template
        self.cache_dir = Path(cache_dir)
        self.timeout_s = float(timeout_s)
        self.max_bytes = int(max_bytes)
        self.max_results = int(max_results)
        self.headers = dict(headers or {})
        self.host = _host(url_template.replace("{query}", "q").replace("{k}", "1"))
        self._local = threading.local()

    def search(self, caption: str, k: int, exclude: set[str]) -> list[Candidate]:
        """Up to min(k, max_results) downloaded pictures; [] with a warning when the service fails."""
        query = require_caption(caption)[:MAX_QUERY_CHARS]
        self._local.warnings = []
        limit = min(k, self.max_results)
        if limit <= 0:
            return []
        url = self.url_template.replace("{query}", quote(query, safe="")).replace("{k}", str(limit))
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout_s), follow_redirects=True,
                              max_redirects=MAX_REDIRECTS, headers=self.headers) as client:
                hits = [h for h in self._listing(client, url) if h.url not in exclude][:limit]
                if not hits:
                    return []
                with ThreadPoolExecutor(max_workers=min(4, len(hits))) as pool:
                    fetched = list(pool.map(lambda hit: self._fetch(client, hit), hits))
        except _Problem as exc:
            self._warn(f"image search at {self.host} {exc}")
            return []
        except Exception as exc:  # anything else the network stack throws: report, never raise
            self._warn(f"image search at {self.host} failed ({type(exc).__name__}: {exc})")
            return []
        for _, problem in fetched:  # warnings are kept per calling thread: gather the workers' here
            if problem:
                self._warn(problem)
        return [c for c, _ in fetched if c is not None and c.path not in exclude]

    def status(self) -> str:
        """"http: image search at HOST (timeout 5 s)"."""
        return f"{self.name}: image search at {self.host} (timeout {self.timeout_s:g} s)"

    def last_warnings(self) -> list[str]:
        """Why results were dropped or missing in this thread's last search."""
        return list(getattr(self._local, "warnings", []))

    # --- requests ---------------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        self._local.warnings.append(message)

    def _listing(self, client: httpx.Client, url: str) -> list[_Hit]:
        ctype, body = self._get(client, url, MAX_JSON_BYTES, expect=None)
        try:
            data = json.loads(body.decode("utf-8-sig"))
        except ValueError:
            shown = "an HTML page" if "html" in ctype or body.lstrip()[:1] == b"<" else f"{ctype or 'untyped data'}"
            raise _Problem(f"did not return JSON (got {shown})") from None
        items = data.get("images") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise _Problem('returned JSON of an unexpected shape (expected a list of image URLs or '
                           '{"images": [{"url": ...}]})')
        hits, unusable = [], 0
        for item in items:
            link = item if isinstance(item, str) else item.get("url") if isinstance(item, dict) else None
            if not isinstance(link, str) or not link.strip():
                unusable += 1
                continue
            link = urljoin(url, link.strip())
            if urlsplit(link).scheme.lower() not in ("http", "https"):
                self._warn(f"image search at {self.host} returned a non-http address "
                           f"({urlsplit(link).scheme or 'no scheme'}:); dropped")
                continue
            meta = item if isinstance(item, dict) else {}
            score = meta.get("score")
            hits.append(_Hit(link, float(score) if isinstance(score, (int, float)) else 0.0))
        if unusable:
            self._warn(f"image search at {self.host} returned {unusable} entries without a URL; ignored")
        return hits

    def _get(self, client: httpx.Client, url: str, cap: int, expect: Optional[str]) -> tuple[str, bytes]:
        """Content type and body of a GET, streamed under `cap` bytes and an overall deadline."""
        deadline = time.monotonic() + 3 * self.timeout_s  # a trickling server cannot hold a worker forever
        try:
            with client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise _Problem(f"answered HTTP {resp.status_code}")
                ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                if expect and not ctype.startswith(expect):
                    kind = "an HTML page" if "html" in ctype else (ctype or "untyped data")
                    raise _Problem(f"is {kind}, not an image (Content-Type {ctype or 'missing'})")
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise _Problem(f"is too large ({_size(int(declared))}; the limit is {_size(cap)})")
                body = io.BytesIO()
                for chunk in resp.iter_bytes():
                    body.write(chunk)
                    if body.tell() > cap:
                        raise _Problem(f"is too large (over the {_size(cap)} limit)")
                    if time.monotonic() > deadline:
                        raise _Problem(f"took longer than {3 * self.timeout_s:g} s to send")
                return ctype, body.getvalue()
        except httpx.TimeoutException:
            raise _Problem(f"timed out after {self.timeout_s:g} s") from None
        except httpx.TooManyRedirects:
            raise _Problem(f"redirected more than {MAX_REDIRECTS} times") from None
        except httpx.UnsupportedProtocol:
            raise _Problem("redirected to an address that is not http/https") from None
        except httpx.NetworkError as exc:  # refused, unreachable, reset
            raise _Problem(f"could not be reached ({exc or type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise _Problem(f"failed ({type(exc).__name__}: {exc})") from None

    def _fetch(self, client: httpx.Client, hit: _Hit) -> tuple[Optional[Candidate], str]:
        """The downloaded candidate, or None and why not (runs in a worker thread)."""
        key = hashlib.sha256(hit.url.encode()).hexdigest()[:40]
        for cached in (self.cache_dir / f"{key}.jpg", self.cache_dir / f"{key}.png"):
            if cached.is_file():
                try:
                    load_image(cached)
                    return Candidate(str(cached), "http", hit.score, hit.url), ""
                except InputError:
                    cached.unlink(missing_ok=True)  # damaged in the cache: fetch it again
        label = f"image {Path(urlsplit(hit.url).path).name or '/'} from {_host(hit.url)}"
        try:
            _, body = self._get(client, hit.url, self.max_bytes, expect="image/")
            intake = load_image(body, name=Path(urlsplit(hit.url).path).name or "image", max_bytes=self.max_bytes)
            # Store the normalised pixels, not the bytes received: no metadata, no odd formats.
            path = self.cache_dir / f"{key}.{'jpg' if intake.format == 'JPEG' else 'png'}"
            out = io.BytesIO()
            intake.image.save(out, format="JPEG" if intake.format == "JPEG" else "PNG", quality=92)
            atomic_write(path, out.getvalue())
        except _Problem as exc:
            return None, f"{label} {exc}; dropped"
        except InputError as exc:
            return None, f"{label} is not a usable image: {exc.message} Dropped."
        except OSError as exc:
            return None, f"{label} could not be saved in {self.cache_dir} ({exc.strerror or exc}); dropped"
        return Candidate(str(path), "http", hit.score, hit.url), ""
