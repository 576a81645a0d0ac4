"""Exports are looked up by name in studio.exports.EXPORTS, and the UI offers exactly what it holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.core.article import ArticleBlock, ArticleDraft
from studio.core.session import ChatSession
from studio.core.types import Message
from studio.errors import UnknownName
from studio.exports import EXPORTS, export_kinds
from tests.e2e.helpers import chat, connect
from tests.support.apps import running_app, write_config


def test_registry_names_every_download():
    assert EXPORTS.names() == ["article_html", "article_markdown", "article_xlsx", "conversation_json",
                               "conversation_markdown"]
    assert export_kinds("article") == ["html", "markdown", "xlsx"]
    assert export_kinds("conversation") == ["json", "markdown"]
    with pytest.raises(UnknownName, match="article_pdf.*known: article_html"):
        EXPORTS.get("article_pdf")


def test_each_export_gives_a_named_file():
    sess = ChatSession(title="Trip / plans", messages=[Message.of("user", "hi"), Message.of("assistant", "hello")])
    md = EXPORTS.get("conversation_markdown")(sess, "tiny-model")
    assert md.filename.endswith(".md") and "/" not in md.filename and b"tiny-model" in md.data
    data = json.loads(EXPORTS.get("conversation_json")(sess, None).data)
    assert [m["content"] for m in data["messages"]] == ["hi", "hello"]
    draft = ArticleDraft(title="Cats", blocks=[ArticleBlock("Cats sleep a lot.")])
    for kind, ext in (("markdown", ".zip"), ("html", ".html"), ("xlsx", ".xlsx")):
        result = EXPORTS.get(f"article_{kind}")(draft, None)
        assert result.filename.endswith(ext) and result.data, kind


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exports")
    with running_app(write_config(tmp), tmp / "data") as running:
        yield running


def test_the_ui_offers_what_the_registry_holds(app):
    client, _ = connect(app.url)
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    offered = {n for n in named if "export" in n}
    assert offered == ({f"/export_{k}" for k in export_kinds("conversation")}
                       | {f"/agent_export_{k}" for k in export_kinds("conversation")}
                       | {f"/article_export_{k}" for k in export_kinds("article")}
                       | {"/export_homework", "/article_export_homework"})  # the bundle: studio.tasks.homework
    chat(client, "export this")
    path = Path(client.predict(api_name="/export_markdown"))
    assert path.suffix == ".md" and "export this" in path.read_text(encoding="utf-8")


def test_the_homework_bundle_downloads_from_both_tabs(app):
    import zipfile

    client, _ = connect(app.url)
    assert client.predict(api_name="/export_homework") is None  # empty: a notice, no file, no error
    chat(client, "hand this in")
    path = Path(client.predict(api_name="/export_homework"))
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["homework.html", "record.json"]
        record = json.loads(zf.read("record.json"))
        assert "hand this in" in zf.read("homework.html").decode("utf-8")
    assert [m["content"] for m in record["transcript"]] == ["hand this in", "echo: hand this in"]
    assert record["engine"]["engine"] == "scripted"
    ours = list((app.services.files.root / "exports").glob("*/hand-this-in-homework.zip"))
    assert ours and all(p.stat().st_mode & 0o077 == 0 for p in ours)  # written in the private folder, 0600
    file_out, _ = client.predict(api_name="/article_export_homework")
    assert file_out is None  # no article yet: a notice, no file
