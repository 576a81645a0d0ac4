"""gradio_client helpers shared by the e2e tests."""

from __future__ import annotations

from gradio_client import Client

from studio.ui.convert import shown_text

from tests.support.waits import wait_until

GREEDY = dict(do_sample=False, temperature=0.0, seed=-1)


def connect(url: str, token: str = "", auth=None, headers=None) -> tuple[Client, str]:
    """A page load: a client of the studio's user (the local user without a login; `token` is what the
    browser kept), with a new conversation open; returns it and the user id the page was given. `headers` go
    with each call."""
    client = Client(url, verbose=False, auth=auth, headers=headers)
    out = client.predict(token, api_name="/resume")
    client.predict(api_name="/new")  # every client shares the local user: start from an empty chat
    return client, out[0]


def chat(client: Client, text: str, **params):
    """Send a message; returns (all streamed outputs, final outputs)."""
    job = client.submit(text, api_name="/chat", **params)
    outs = list(job)
    return outs, job.outputs()[-1] if job.outputs() else None


def reply_text(chatbot: list) -> str:
    """The last assistant message's text from a Chatbot value, as stored (no stats line; prices' `$` as written)."""
    for msg in reversed(chatbot):
        if msg["role"] == "assistant":
            content = msg["content"]
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return shown_text(content)
    return ""


def wait_for(predicate, what: str, progress=None, step: float = 0.1):
    """Poll until predicate() is truthy; returns its value. Fails, naming `what`, only when nothing
    has changed for a long time (tests/support/waits.py), never on a fixed deadline."""
    return wait_until(predicate, what, progress=progress, step=step)


def resume_open(client: Client, user: str):
    """A reload as the browser makes it: /resume with the conversation it had open (here the newest)."""
    listing = client.predict("", api_name="/search")[0]["choices"]
    return client.predict(user, listing[0][1] if listing else "", api_name="/resume")
