"""What a streaming chat reply costs the server per frame: shown texts converted once, lean updates."""

from __future__ import annotations

import importlib.util
import sys

import gradio as gr
import pytest

from studio.core.session import ChatSession
from studio.core.types import Message
from studio.ui import chat_tab
from studio.ui.app import skip_matplotlib_probe
from studio.ui.convert import ShownTexts, chatbot_messages
from studio.ui.i18n import build_i18n
from studio.ui.pacing import FramePacer


def _conversation() -> ChatSession:
    s = ChatSession(engine="chat")
    s.messages += [Message.of("user", "What is $5 + $3, and \\(x^2\\)?"), Message.of("assistant", "It costs $8.")]
    s.messages[-1].meta = {"stats": {"finish_reason": "stop", "completion_tokens": 4, "first_token_s": 0.1,
                                     "tokens_per_s": 20.0}}
    return s


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_kept_texts_show_what_a_full_conversion_shows_through_edits_versions_and_stops(lang):
    texts, s = ShownTexts(), _conversation()

    def same():
        assert chatbot_messages(s, lang, texts) == chatbot_messages(s, lang)

    same()
    s.messages += [Message.of("user", "And \ud800 a lone surrogate, $1?"), Message.of("assistant", "Half", partial=True)]
    same()  # a stopped reply: labelled partial, no stats line
    s.messages[-1] = Message.of("assistant", "Half a reply, then more")
    same()  # the same place, other text: never the old text kept for it
    s.branch(2)  # an edit of the second question keeps what followed as version 1
    s.messages.append(Message.of("user", "Edited: what is $9?"))
    same()
    s.messages.append(Message.of("assistant", "Nine dollars."))
    same()
    s.switch_version(2, 1)  # back to the first version: the marks ‹ 1/2 › and the old texts
    same()
    s.messages[1] = Message.of("assistant", "It costs $8.", partial=True)  # same text, now partial
    same()
    assert len(texts) >= 4  # the earlier messages were kept, not converted again


def test_kept_texts_stay_within_their_bound_oldest_first():
    texts = ShownTexts(max_chars=100)
    for i in range(10):
        assert texts.get(f"{i:02d}" + "x" * 28) == f"{i:02d}" + "x" * 28
    assert len(texts) == 3  # 3 × 30 characters fit in 100
    assert texts.get("x" * 500) == "x" * 500 and len(texts) == 3  # too long to keep, still shown


@pytest.fixture()
def handlers(monkeypatch):
    monkeypatch.setattr(chat_tab, "UI_FRAME_S", 0.0)  # every delta is a frame
    with gr.Blocks():
        tab = chat_tab.build(build_i18n(), "chat")
    return chat_tab._Handlers(None, tab, FramePacer(budget=float("inf")))


def test_matplotlib_absent_is_marked_so_and_present_is_left(monkeypatch):
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    skip_matplotlib_probe()
    assert sys.modules["matplotlib"] is None
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401
    monkeypatch.delitem(sys.modules, "matplotlib")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # installed
    skip_matplotlib_probe()
    assert "matplotlib" not in sys.modules
