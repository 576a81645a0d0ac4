"""A draft a browser kept under its old per-browser key, with an uploaded picture, is the local user's
after the page's /resume: listed, opened with its picture shown, and exported with it; its prompt presets
and agent conversations move too."""

from __future__ import annotations

import zipfile
from html.parser import HTMLParser
from pathlib import Path

from studio.core.article import ArticleBlock, ArticleDraft, ArticleImage, Candidate
from studio.core.session import ChatSession
from studio.core.types import Message
from studio.store import ConversationStore, DraftFiles, DraftStore, PresetStore
from studio.tasks.users import local_user
from tests.e2e.helpers import connect
from tests.support.apps import REPO, running_app, write_config

OLD = "fedcba9876543210fedcba9876543210"  # what the page kept in localStorage before the local user
UPLOAD = REPO / "assets" / "gallery" / "astronaut.jpg"


def write_old_draft(data: Path) -> ArticleDraft:
    """Store a draft the way the per-browser code did: rows and the uploaded file under the browser's key."""
    store, files = DraftStore(data / "drafts.db"), DraftFiles(data / "drafts")
    draft = ArticleDraft(title="Moon walk notes", instruction="Moon walk notes")
    store.save(OLD, draft)
    upload = files.adopt(OLD, draft.id, UPLOAD, "astronaut")
    image = ArticleImage(str(upload), "An astronaut", "upload", [Candidate(str(upload), "upload", 1.0, "An astronaut")])
    draft.blocks = [ArticleBlock("We walked on the moon.", image)]
    draft.uploads = [str(upload)]
    store.save(OLD, draft)
    PresetStore(data / "presets.db").save_named(OLD, "Moon tone", "Write like a mission log.")
    agent = ChatSession(title="Agent on the moon", messages=[Message.of("user", "Plot the orbit")])
    ConversationStore(data / "agent.db").save(OLD, agent)
    return draft


def img_sources(html: str) -> list[str]:
    found = []

    class Imgs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                found.append(dict(attrs)["src"])

    Imgs().feed(html)
    return found


def test_an_old_browser_draft_with_its_picture_is_the_local_users_after_resume(tmp_path):
    data = tmp_path / "data"
    draft = write_old_draft(data)
    with running_app(write_config(tmp_path), data) as app:
        client, user = connect(app.url, token=OLD)
        assert user == local_user()
        listed = client.predict(api_name="/article_drafts")["choices"]
        assert draft.id in [c[1] for c in listed]
        moved = app.services.drafts.load(user, draft.id)
        assert app.services.drafts.list(OLD) == [] and not Path(draft.uploads[0]).exists()
        assert Path(moved.uploads[0]).read_bytes() == UPLOAD.read_bytes()  # copied into the user's folder
        out = client.predict(draft.id, api_name="/article_open")
        assert "We walked on the moon." in out[2] and "article-missing" not in out[2]
        assert [s[:11] for s in img_sources(out[2])] == ["data:image/"]  # the picture is shown
        html_path, notice = client.predict(api_name="/article_export_html")
        assert "missing" not in (notice or "")
        assert [s[:11] for s in img_sources(Path(html_path).read_text(encoding="utf-8"))] == ["data:image/"]
        with zipfile.ZipFile(client.predict(api_name="/article_export_markdown")[0]) as z:
            pictures = [n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png"))]
            assert pictures and z.read(pictures[0])[:2] == b"\xff\xd8"
        assert [p.title for p in app.services.presets.list(user)] == ["Moon tone"]
        assert "Agent on the moon" in [c.title for c in app.services.agent_store.list(user)]
        assert app.services.agent_store.count(OLD) == 0 and app.services.presets.count(OLD) == 0
        connect(app.url, token=OLD)  # a second load with the old key finds nothing to move and breaks nothing
        assert Path(app.services.drafts.load(user, draft.id).uploads[0]).read_bytes() == UPLOAD.read_bytes()
