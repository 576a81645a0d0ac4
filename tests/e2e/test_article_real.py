"""The article studio on the embedded SmolLM2 (real generation) through the launched app."""

from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import connect, wait_for
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
    assert "✓ Choose one image each" in steps, (steps, notice)
    assert len({p for p in previews}) >= 3  # the text streamed into the preview
    draft = app.services.drafts.load(user, app.services.drafts.list(user)[0].id)
    placed = [b.image for b in draft.blocks if b.image]
    assert len(placed) == 1 and placed[0].caption
    assert all(str(GALLERY) in c.path for c in placed[0].candidates)
    assert "<img" in preview and draft.model


def test_an_article_with_the_embedded_models_defaults_completes(app):
    from studio.tasks import article_plan

    p = article_plan.defaults(app.services, "chat")
    assert (p.max_new_tokens, p.image_count, p.model_selects) == (300, 2, False)  # the short CPU defaults
    client, user = connect(app.url)
    job = client.submit("A walk in the park", "", [], p.beams, p.repetition_penalty, p.max_new_tokens, p.do_sample,
                        -1, str(p.image_count), p.model_selects, api_name="/article_write")
    job.result()
    steps, notice = job.outputs()[-1][:2]
    assert "✓ Choose one image each" in steps and "(spread evenly)" in steps, (steps, notice)
    draft = app.services.drafts.load(user, app.services.drafts.list(user)[0].id)
    assert draft.status == "done" and len(draft.blocks) >= 2 and draft.text().strip()
    placed = [b.image for b in draft.blocks if b.image]
    assert len(placed) == 2 and all(i.caption and "…" not in i.caption for i in placed)
    assert draft.text().rstrip()[-1] in ".!?\"'”)"  # a sentence cut by the token limit is left out
    assert "positions" not in notice.lower()  # the model was never asked where the pictures go


def test_cancel_mid_article_keeps_what_was_written(app):
    client, user = connect(app.url)
    engine = app.services.engines.get("chat")
    job = client.submit("The history of tea", "", [], 1, 1.1, 2000, False, -1, "auto", True,
                        api_name="/article_write")
    started = time.monotonic()
    wait_for(lambda: (lambda o: o and "article-block" in o[-1][2] and len(o[-1][2]) > 400)(job.outputs()),
             "the article text to stream", progress=lambda: len(job.outputs()))
    pace = (time.monotonic() - started) / len(job.outputs())  # this machine's seconds per update, now
    job.cancel()
    stopped = time.monotonic()
    wait_for(lambda: not engine._lock.locked(), "the engine to be free after Stop")
    # Freed by Stop, not by finishing 2000 tokens: within a few dozen updates' time at this machine's pace.
    assert time.monotonic() - stopped < max(5.0, 40 * pace), "still generating after Stop"
    wait_for(lambda: app.services.drafts.list(user), "the draft to be saved as the handler winds down")
    draft = app.services.drafts.load(user, app.services.drafts.list(user)[0].id)
    assert draft.blocks and draft.blocks[0].text.strip() and not any(b.image for b in draft.blocks)
