"""The article studio on the embedded SmolLM2 (real generation) through the launched app."""

from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import connect
from tests.support.apps import EMBEDDED_CONFIG, REPO, running_app

GALLERY = REPO / "assets" / "gallery"


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_cache_dir):
    with running_app(EMBEDDED_CONFIG, tmp_path_factory.mktemp("article-real") / "data",
                     cache_dir=embedded_cache_dir) as running:
        yield running


def test_an_article_with_a_gallery_picture(app):
    client, user = connect(app.url)
    job = client.submit("A visit to a coffee shop", "", [], 1, 1.1, 120, False, -1, "1", True,
                        api_name="/article_write")
    previews = [o[2] for o in job]
    job.result()
    steps, notice, preview = job.outputs()[-1][:3]
    assert "✅ Choose one image each" in steps, (steps, notice)
    assert len({p for p in previews}) >= 3  # the text streamed into the preview
    draft = app.services.drafts.load(user, app.services.drafts.list(user)[0].id)
    placed = [b.image for b in draft.blocks if b.image]
    assert len(placed) == 1 and placed[0].caption
    assert all(str(GALLERY) in c.path for c in placed[0].candidates)
    assert "<img" in preview and draft.model


def test_cancel_mid_article_keeps_what_was_written(app):
    client, user = connect(app.url)
    engine = app.services.engines.get("chat")
    job = client.submit("The history of tea", "", [], 1, 1.1, 2000, False, -1, "auto", True,
                        api_name="/article_write")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        outs = job.outputs()
        if outs and "article-block" in outs[-1][2] and len(outs[-1][2]) > 400:
            break
        time.sleep(0.1)
    job.cancel()
    stopped = time.monotonic()
    while engine._lock.locked() and time.monotonic() - stopped < 5:
        time.sleep(0.05)
    assert not engine._lock.locked(), "still generating after Stop"
    for _ in range(50):  # the draft is saved as the handler winds down
        if app.services.drafts.list(user):
            break
        time.sleep(0.1)
    draft = app.services.drafts.load(user, app.services.drafts.list(user)[0].id)
    assert draft.blocks and draft.blocks[0].text.strip() and not any(b.image for b in draft.blocks)
