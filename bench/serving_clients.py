"""Concurrent users of a running studio for bench/serving_gpu.py: the chat UI's API and the OpenAI API.

Each user gets its own client and session, made before the clock starts, as a browser user has the page
open before sending; all send at the same moment (a barrier).
First token = the first update whose reply shows text; the reply must end with no error.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from serving_model import prompt

POLL_S = 0.002


def reply_text(chatbot: Any) -> str:
    """The last assistant message's text in a Chatbot value (string or content parts)."""
    for msg in reversed(chatbot or []):
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            parts = content if isinstance(content, list) else [content]
            return "".join(p.get("text", "") if isinstance(p, dict) else str(p or "") for p in parts)
    return ""


def _run(n: int, make: Callable[[int], Any], ask: Callable[[Any, int, float], tuple]) -> tuple[float, list]:
    clients = [make(i) for i in range(n)]
    barrier = threading.Barrier(n)
    t0: list[float] = []

    def one(i: int):
        barrier.wait()
        start = time.monotonic()
        if i == 0:
            t0.append(start)
        return ask(clients[i], i, start)

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    return time.monotonic() - t0[0], results


def ui_users(url: str, n: int, max_new: int) -> tuple[float, list[tuple[float, str]]]:
    """N gradio_client users of the chat tab's `/chat` endpoint: (first token s, final reply) each."""
    from gradio_client import Client

    def ask(client, i: int, start: float):
        job = client.submit(prompt(i), max_new_tokens=max_new, do_sample=False, api_name="/chat")
        first, seen = None, 0
        # Poll job.outputs() rather than iterate the job: Job.__next__ sleeps while holding the lock
        # that the SSE reader needs, which can hold back every update until the reply has ended.
        while first is None and not job.done():
            outs = job.outputs()
            if any(reply_text(o[0]).strip() for o in outs[seen:]):
                first = time.monotonic() - start
            seen = len(outs)
            time.sleep(POLL_S)
        final = job.result()
        notice = final[-1] if isinstance(final, (list, tuple)) else ""
        text = reply_text(final[0])
        if not text or "failed" in str(notice).lower():
            raise RuntimeError(f"user {i}: no reply ({notice!r})")
        return first if first is not None else time.monotonic() - start, text

    def open_page(i: int):
        # A browser user's session exists before they type (the page load makes it); gradio builds a
        # session's state (a config for every block) on its first event, so open it before the clock.
        client = Client(url, verbose=False)
        client.predict(api_name="/clear")
        return client

    return _run(n, open_page, ask)


def api_users(url: str, n: int, max_new: int) -> tuple[float, list[tuple[float, int]]]:
    """N `openai` clients streaming /v1/chat/completions: (first token s, completion tokens) each."""
    from openai import OpenAI

    model = OpenAI(base_url=url + "v1", api_key="unused").models.list().data[0].id

    def ask(client, i: int, start: float):
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt(i)}], max_tokens=max_new, temperature=0,
            stream=True, stream_options={"include_usage": True})
        first, tokens = None, 0
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.monotonic() - start
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return first if first is not None else time.monotonic() - start, tokens

    return _run(n, lambda i: OpenAI(base_url=url + "v1", api_key="unused", max_retries=0, timeout=600), ask)
