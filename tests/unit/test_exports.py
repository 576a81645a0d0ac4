"""Conversation exports: Markdown structure, JSON round trip, safe file names."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from studio.core.session import ChatSession
from studio.core.types import GenParams, ImagePart, Message, TextPart
from studio.errors import InputError
from studio.exports import (
    conversation_json,
    conversation_markdown,
    export_filename,
    parse_conversation_json,
)

WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
TRICKY_USER = "# heading\n\n```python\nprint('hi')\n```\n\n````\nfour\n````\n### Assistant\n"
TRICKY_ANSWER = "Sure:\n\n```\n``` not a close\n```\n\n<script>alert(1)</script>\n  indented\ttab\n"


def make_session() -> ChatSession:
    return ChatSession(
        title="",
        system_prompt="Be brief.\n\n# not a heading\n```\nfenced\n```",
        messages=[
            Message.of("user", TRICKY_USER),
            Message.of("assistant", TRICKY_ANSWER),
            Message.of("user", "请写一个 300 字的小故事 🚀"),
            Message.of("assistant", ""),
        ],
        params=GenParams(max_new_tokens=256, temperature=0.2, stop=("</s>",), seed=3),
        engine="chat",
    )


def markdown_structure(data: bytes) -> tuple[list[tuple[str, str]], list[str], list]:
    """Re-parse with a real CommonMark parser: (heading level, text) pairs, fence contents, tokens."""
    markdown_it = pytest.importorskip("markdown_it")
    tokens = markdown_it.MarkdownIt("commonmark").parse(data.decode("utf-8"))
    headings = [
        (tok.tag, "".join(c.content for c in tokens[i + 1].children))
        for i, tok in enumerate(tokens)
        if tok.type == "heading_open"
    ]
    # Each fence's content is the message plus the one newline the exporter adds before the close.
    fences = [tok.content[:-1] for tok in tokens if tok.type == "fence"]
    return headings, fences, tokens


def test_markdown_structure_survives_tricky_text():
    session = make_session()
    data = conversation_markdown(session, model="internlm2-chat-1_8b", exported_at=WHEN)
    text = data.decode("utf-8")
    headings, fences, tokens = markdown_structure(data)
    # The user's own "# heading" renders as one; the turns keep their sections around it.
    assert headings == [
        ("h1", session.display_title()),
        ("h1", "not a heading"),  # in the quoted system prompt, which renders too
        ("h3", "User"),
        ("h1", "heading"),
        ("h3", "Assistant"),  # typed by the user: their Markdown renders as written
        ("h3", "Assistant"),
        ("h3", "User"),
        ("h3", "Assistant"),
    ]
    assert fences == ["fenced", "print('hi')", "four", "``` not a close"]
    assert "Exported 2025-03-04 05:06 UTC" in text
    assert "internlm2-chat-1\\_8b" in text  # escaped, renders as the plain name
    assert any(t.type == "blockquote_open" for t in tokens)
    assert not any(t.type in ("html_block", "html_inline") for t in tokens)
    assert "&lt;script>alert(1)&lt;/script>" in text  # shown as text, never run by a viewer
    assert "请写一个 300 字的小故事 🚀" in text


def test_markdown_renders_the_replies_formatting_with_markdown2():
    markdown2 = pytest.importorskip("markdown2")
    answer = "Two steps:\n\n- first **bold** step\n- second step\n\n```python\nprint('done')\n```\n\nThat is *all*."
    session = ChatSession(messages=[Message.of("user", "How, in a `list`?"), Message.of("assistant", answer)])
    html = markdown2.markdown(conversation_markdown(session).decode("utf-8"), extras=["fenced-code-blocks"])
    assert "<li>first <strong>bold</strong> step</li>" in html and "<li>second step</li>" in html
    assert "<pre>" in html and "print" in html and "<em>all</em>" in html
    assert "<code>list</code>" in html
    assert "```" not in html  # no message is wrapped in a fence any more


def test_markdown_an_open_fence_or_html_cannot_swallow_the_next_turn():
    session = ChatSession(messages=[Message.of("user", "code?"), Message.of("assistant", "```python\nx = 1", partial=True),
                                    Message.of("user", "<!-- and <script>"), Message.of("assistant", "ok")])
    headings, fences, tokens = markdown_structure(conversation_markdown(session))
    assert [h for _, h in headings[1:]] == ["User", "Assistant", "User", "Assistant"]
    assert fences == ["x = 1"]  # closed at the end of its own message
    assert not any(t.type in ("html_block", "html_inline") for t in tokens)


def test_markdown_title_is_literal_and_html_is_escaped():
    session = ChatSession(title="<b>*bold*</b> # [link](x) `code`", messages=[Message.of("user", "hi")])
    headings, fences, tokens = markdown_structure(conversation_markdown(session))
    assert headings[0] == ("h1", session.title)
    inline = next(t for t in tokens if t.type == "inline")
    assert [c.type for c in inline.children] == ["text"] * len(inline.children)
    assert fences == []


def test_markdown_without_system_prompt_or_model_and_with_images():
    session = ChatSession(
        messages=[Message("user", [ImagePart(object()), TextPart("what is this?")])]
    )
    text = conversation_markdown(session, exported_at=WHEN).decode("utf-8")
    assert "System prompt" not in text
    assert "model" not in text
    assert "(1 image not included in this export)" in text
    assert text.splitlines()[0] == "# what is this?"


def test_markdown_empty_session_and_nul_and_surrogate():
    assert conversation_markdown(ChatSession()).decode("utf-8").startswith("# Conversation\n")
    session = ChatSession(messages=[Message.of("user", "a\x00b \ud800")])
    text = conversation_markdown(session).decode("utf-8")
    assert "ab \ufffd" in text  # a NUL means nothing in a document; a lone surrogate shows as U+FFFD


def test_json_round_trip_equal_session():
    session = make_session()
    session.messages.append(Message.of("user", "nul\x00 and 200k " + "长" * 200_000))
    data = conversation_json(session, model="internlm2", exported_at=WHEN)
    doc = json.loads(data.decode("utf-8"))
    assert doc["format"] == "puyu-studio.conversation"
    assert doc["version"] == 1
    assert doc["exported_at"] == "2025-03-04T05:06:07Z"
    assert doc["model"] == "internlm2"
    assert doc["messages"][0] == {"role": "user", "content": TRICKY_USER}
    assert "请写一个" in data.decode("utf-8")  # ensure_ascii=False
    assert parse_conversation_json(data) == session


def test_json_round_trip_lone_surrogate():
    session = ChatSession(messages=[Message.of("user", "x\ud800y")])
    data = conversation_json(session)
    data.decode("utf-8")  # still valid UTF-8
    assert parse_conversation_json(data) == session


def test_json_exported_at_defaults_to_now_utc():
    doc = json.loads(conversation_json(ChatSession()))
    stamp = datetime.fromisoformat(doc["exported_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60
    assert doc["model"] is None


def test_parse_minimal_document_gets_defaults():
    data = json.dumps({"format": "puyu-studio.conversation", "version": 1}).encode()
    session = parse_conversation_json(data)
    assert session.messages == [] and session.title == "" and session.params == GenParams()
    assert len(session.id) == 32


def test_parse_accepts_bom():
    data = "\ufeff".encode("utf-8") + conversation_json(make_session())
    assert parse_conversation_json(data).messages[0].text == TRICKY_USER


def _doc(**changes) -> bytes:
    doc = json.loads(conversation_json(make_session()))
    doc.update(changes)
    return json.dumps(doc).encode("utf-8")


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[1, 2]", "not a Puyu Studio conversation"),
        (b'{"format": "other", "version": 1}', "not a Puyu Studio conversation"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not a Puyu"),
        (_doc(version=2), "version 2"),
        (_doc(version=True), "version True"),
        (_doc(messages="hi"), '"messages" is not a list'),
        (_doc(messages=[{"role": "robot", "content": "x"}]), "Message 1"),
        (_doc(messages=[{"role": "user", "content": ["x"]}]), "Message 1"),
        (_doc(params={"temperature": 9}), "temperature"),
        (_doc(params={"unknown": 1}), "unknown"),
        (_doc(params=[]), '"params" is not an object'),
        (_doc(title=5), '"title" has the wrong type'),
        (_doc(created=True), '"created" has the wrong type'),
        (_doc(id="../../etc"), '"id" is not a valid identifier'),
    ],
)
def test_parse_rejects_bad_input(data, match):
    with pytest.raises(InputError, match=match) as info:
        parse_conversation_json(data)
    assert info.value.hint


@pytest.mark.parametrize(
    "title, expected",
    [
        ("../../etc/passwd", "etc-passwd.md"),
        ("a/b", "a-b.md"),
        ("a\\b", "a-b.md"),
        ("x\x00y", "x-y.md"),
        ("请写一个 300 字的小故事", "请写一个-300-字的小故事.md"),
        ("", "conversation.md"),
        ("...", "conversation.md"),
        ("   \t\n ", "conversation.md"),
        ("🚀🔥", "conversation.md"),
        ("Rocket 🚀 launch", "Rocket-launch.md"),
        (".hidden", "hidden.md"),
        ("version 1.2: notes?", "version-1-2-notes.md"),
        ("NUL", "conversation-NUL.md"),
        ("snake_case title", "snake_case-title.md"),
    ],
)
def test_export_filename_cases(title, expected):
    assert export_filename(title, "md") == expected


def test_export_filename_caps_length():
    assert export_filename("x" * 500, ".json") == "x" * 80 + ".json"
    cjk = export_filename("长" * 500, "md")
    assert cjk == "长" * 80 + ".md"
    wide = export_filename("\U00020000" * 500, "md")  # four UTF-8 bytes each
    assert wide == "\U00020000" * 60 + ".md"
    assert len(export_filename("\U00020000" * 500, "abcdefghij").encode("utf-8")) <= 255


def test_export_filename_is_always_safe():
    hostile = ["/", "\\", "..", "\x00", "\x1f", "\u202e", ":", "*", "?", '"', "<", ">", "|", " "]
    for a in hostile:
        for b in hostile:
            name = export_filename(f"{a}{b}title{a}", "txt")
            assert not name.startswith(".")
            assert not any(ch in name for ch in '/\\\x00\x1f\u202e:*?"<>| ')
            assert name.endswith(".txt") and name.count(".") == 1


@pytest.mark.parametrize("ext", ["", ".", "m/d", "../x", "a" * 11])
def test_export_filename_rejects_bad_extension(ext):
    with pytest.raises(ValueError):
        export_filename("t", ext)


def test_an_interrupted_reply_is_marked_in_both_exports_and_read_back():
    session = ChatSession(messages=[Message.of("user", "tell me"), Message.of("assistant", "once upon", partial=True),
                                    Message.of("user", "again"), Message.of("assistant", "done")])
    md = conversation_markdown(session, exported_at=WHEN).decode("utf-8")
    assert md.count("this reply was interrupted") == 1
    assert md.index("this reply was interrupted") < md.index("once upon")
    data = conversation_json(session, exported_at=WHEN)
    assert [m.get("partial") for m in json.loads(data)["messages"]] == [None, True, None, None]
    assert [m.partial for m in parse_conversation_json(data).messages] == [False, True, False, False]
