"""ArXiv search: an optional tool that needs the network; every failure is an error result, never an exception."""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import httpx

from studio.tools.base import ToolResult, ToolSpec
from studio.tools.schemas import check_arguments

ARXIV_API = "http://export.arxiv.org/api/query"
ATOM = "{http://www.w3.org/2005/Atom}"
MAX_RESULTS = 5
MAX_BYTES = 2 * 1024 * 1024  # five entries are a few KiB; more means something else answered
NEEDS_NETWORK = "The arxiv_search tool needs the network; answer without it or try again later."
SPEC = ToolSpec(
    name="arxiv_search",
    description="Search arXiv for scientific papers; returns titles, authors, dates and abstracts.",
    parameters={"type": "object", "properties": {
        "query": {"type": "string", "description": "Keywords to search for, in English, e.g. \"InternLM2 agent\"."},
        "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "default": 3,
                        "description": f"How many papers to return (1 to {MAX_RESULTS})."}},
        "required": ["query"]})


@dataclass(frozen=True)
class Paper:
    """One arXiv entry, as the tool reports it."""

    title: str
    authors: tuple[str, ...]
    published: str  # YYYY-MM-DD
    summary: str
    url: str


class ArxivSearch:
    """The arxiv_search tool: GET the arXiv API and give the model the papers as text."""

    spec = SPEC

    def __init__(self, base_url: str = ARXIV_API, timeout_s: float = 15.0, abstract_chars: int = 600,
                 trust_env: bool = True) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.abstract_chars = abstract_chars
        self.trust_env = trust_env  # HTTP(S)_PROXY from the environment, as many users behind a proxy need

    def run(self, arguments: Any, cancel: threading.Event) -> ToolResult:
        """Search arXiv; offline, slow, failing or odd answers come back as an error result saying so."""
        started = time.monotonic()
        if isinstance(arguments, dict) and type(arguments.get("max_results")) is int:  # asking for 10 gets 5
            arguments = {**arguments, "max_results": min(max(arguments["max_results"], 1), MAX_RESULTS)}
        problems = check_arguments(self.spec, arguments)
        if not problems and not arguments["query"].strip():
            problems = ["argument 'query' is empty; give some keywords"]
        if problems:
            return ToolResult(error="; ".join(problems), seconds=time.monotonic() - started)
        text, error = self._search_or_stop(arguments["query"].strip(), arguments.get("max_results", 3), cancel)
        return ToolResult(text=text, error=error, seconds=time.monotonic() - started)

    def _search_or_stop(self, query: str, max_results: int, cancel: threading.Event) -> tuple[str, str]:
        """The search in a worker thread, so Stop answers at once even while a connection hangs."""
        box: list[tuple[str, str]] = []
        worker = threading.Thread(target=lambda: box.append(self._search(query, max_results, cancel)),
                                  name="arxiv-search", daemon=True)
        worker.start()
        while worker.is_alive() and not cancel.is_set():
            worker.join(0.1)
        # A hanging request stays behind until its own timeout ends it; its answer is not waited for.
        return box[0] if box else ("", "The search was stopped.")

    def _search(self, query: str, max_results: int, cancel: threading.Event) -> tuple[str, str]:
        if cancel.is_set():
            return "", "The search was stopped before it started."
        params = {"search_query": f"all:{query}", "start": 0, "max_results": max_results}
        try:
            body = self._get(params, cancel)
        except httpx.TimeoutException:
            return "", f"arXiv ({self.base_url}) did not answer within {self.timeout_s:g} s. {NEEDS_NETWORK}"
        except httpx.HTTPStatusError as exc:
            return "", f"arXiv ({self.base_url}) answered HTTP {exc.response.status_code}. {NEEDS_NETWORK}"
        except _Stopped:
            return "", "The search was stopped."
        except (httpx.HTTPError, _TooBig) as exc:
            return "", f"Could not reach arXiv at {self.base_url} ({_reason(exc)}). {NEEDS_NETWORK}"
        try:
            papers = parse_feed(body)
        except ValueError as exc:
            return "", f"arXiv's answer could not be read ({exc}). {NEEDS_NETWORK}"
        if not papers:
            return f"No arXiv papers found for {query!r}.", ""
        return "\n\n".join(self._format(i, p) for i, p in enumerate(papers, 1)), ""

    def _get(self, params: dict, cancel: threading.Event) -> bytes:
        """The response body, read in chunks so Stop is seen between them and a huge answer is cut off."""
        chunks, size = [], 0
        with httpx.stream("GET", self.base_url, params=params, timeout=self.timeout_s,
                          follow_redirects=True, trust_env=self.trust_env) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                if cancel.is_set():
                    raise _Stopped()
                size += len(chunk)
                if size > MAX_BYTES:
                    raise _TooBig(f"the answer was larger than {MAX_BYTES // 1024 // 1024} MiB")
                chunks.append(chunk)
        return b"".join(chunks)

    def _format(self, number: int, paper: Paper) -> str:
        authors = ", ".join(paper.authors[:6]) + (" et al." if len(paper.authors) > 6 else "")
        summary = paper.summary
        if len(summary) > self.abstract_chars:
            summary = summary[: self.abstract_chars].rsplit(" ", 1)[0] + " …"
        return f"{number}. {paper.title}\nAuthors: {authors}\nPublished: {paper.published}\nURL: {paper.url}\n" \
               f"Abstract: {summary}"


class _Stopped(Exception):
    """The user pressed Stop while the answer was arriving."""


class _TooBig(Exception):
    """The answer was larger than any arXiv answer for five papers."""


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return "offline or refused" if isinstance(exc, httpx.ConnectError) and not str(exc) else text


def parse_feed(body: bytes) -> list[Paper]:
    """The papers of an arXiv Atom feed; ValueError when it is not one (or is an arXiv error entry)."""
    if b"<!DOCTYPE" in body[:4096] or b"<!ENTITY" in body:  # arXiv never sends these; entities can explode
        raise ValueError("it declares a DTD, which arXiv's feeds never do")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    if root.tag != f"{ATOM}feed":
        raise ValueError(f"not an Atom feed (its root is <{root.tag}>)")
    papers = []
    for entry in root.iter(f"{ATOM}entry"):
        url = _text(entry, "id")
        if "/api/errors" in url:  # how the arXiv API reports a bad query
            raise ValueError(f"arXiv reported an error: {_text(entry, 'summary')}")
        authors = tuple(_clean(a.findtext(f"{ATOM}name", "")) for a in entry.iter(f"{ATOM}author"))
        papers.append(Paper(_text(entry, "title"), authors, _text(entry, "published")[:10],
                            _text(entry, "summary"), url))
    return papers


def _text(entry: ET.Element, tag: str) -> str:
    return _clean(entry.findtext(f"{ATOM}{tag}", ""))


def _clean(text: str) -> str:
    """Collapse the line breaks and indentation arXiv puts inside titles and abstracts."""
    return re.sub(r"\s+", " ", text).strip()
