"""The article tab over HTTP with gradio_client: the pipeline's steps, every edit, drafts per user and
across a restart, and the three exports re-opened. The scripted engine, told the pipeline's replies in
the order it asks, keeps the text predictable; retrieval from the shipped gallery and the exports are real."""

from __future__ import annotations

import zipfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError

from tests.e2e.helpers import connect
from tests.support.apps import running_app, write_config
from tests.support.scripted import ARTICLE, ARTICLE_TEXT, scripted

SETTINGS = dict(beams=1, repetition_penalty=1.05, max_new_tokens=200, do_sample=False, seed=-1,
                image_count="auto", model_selects=True)


def write(client, title, material="", uploads=None, **kw):
    job = client.submit(title, material, uploads or [], *{**SETTINGS, **kw}.values(), api_name="/article_write")
    outs = list(job)
    job.result()
    return outs, job.outputs()[-1]


def blocks_of(app, user):
    drafts = app.services.drafts.list(user)
    return app.services.drafts.load(user, drafts[0].id)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("article")
    cfg = write_config(tmp)
    with running_app(cfg, tmp / "data") as running:
        running.config_path, running.data_dir = cfg, tmp / "data"
        yield running


@pytest.fixture
def engine(app):
    """The app's scripted engine; a test leaves none of the replies it queued unasked for."""
    engine = scripted(app.services)
    yield engine
    assert engine.clear() == [], "replies queued that the pipeline never asked for"


def test_write_runs_every_step_and_places_gallery_images(app, engine):
    client, user = connect(app.url)
    engine.enqueue(*ARTICLE)
    outs, final = write(client, "A lazy afternoon")
    steps, notice, preview = final[0], final[1], final[2]
    for name in ("Write the text", "Split into paragraphs", "Choose image positions", "Write captions",
                 "Find candidate images", "Choose one image each"):
        assert f"✓ {name}" in steps, steps
    assert "Ignored position(s) 99" in notice  # the model named a paragraph that does not exist
    draft = blocks_of(app, user)
    assert [b.text for b in draft.blocks][:2] == ["Cats sleep a lot.", "A cat on the sofa is happy."]
    placed = [b.image for b in draft.blocks if b.image]
    assert placed and placed[0].caption == "a cat sitting on a sofa"
    assert "chelsea" in placed[0].candidates[0].path  # the gallery's cat comes first
    assert Path(placed[0].path).is_file() and "drafts" in placed[0].path  # copied into the draft's own folder
    assert preview.count("<img") == len(placed) and "<script" not in preview
    assert any("A lazy afternoon" in label for label, _ in [tuple(c) for c in final[7]["choices"]])


def test_every_edit_and_undo(app, engine):
    client, user = connect(app.url)
    engine.enqueue(*ARTICLE, "Rewrited paragraph.", "Expandd paragraph.", "Shortend paragraph.",
                   "Inserted paragraph.", "Inserted paragraph.")
    write(client, "Edits")
    def call(api, *args):
        return client.predict(*args, api_name=api)
    for op, expect in (("rewrite", "Rewrited paragraph."), ("expand", "Expandd paragraph."),
                       ("shorten", "Shortend paragraph.")):
        call(f"/article_{op}", 0, "")
        assert blocks_of(app, user).blocks[0].text == expect
    n = len(blocks_of(app, user).blocks)
    call("/article_insert_before", 0, "an opening")
    call("/article_insert_after", 0, "")
    texts = [b.text for b in blocks_of(app, user).blocks]
    assert len(texts) == n + 2 and texts[0] == texts[1] == "Inserted paragraph."
    call("/article_set_text", 2, "My own words.")
    assert blocks_of(app, user).blocks[2].text == "My own words."
    call("/article_undo", 2)
    assert blocks_of(app, user).blocks[2].text == "Shortend paragraph."
    call("/article_delete_block", 0)
    assert len(blocks_of(app, user).blocks) == n + 1
    call("/article_search", 0, "a rocket launch")
    img = blocks_of(app, user).blocks[0].image
    assert img.caption == "a rocket launch" and "rocket" in Path(img.candidates[0].path).name
    call("/article_pick", 0, 1)
    assert blocks_of(app, user).blocks[0].image.path != img.path
    call("/article_delete_image", 0)
    assert blocks_of(app, user).blocks[0].image is None
    with pytest.raises(AppError, match="has no image"):
        call("/article_delete_image", 0)
    with pytest.raises(AppError, match="not in the list of choices"):  # the paragraph picker's own check
        call("/article_rewrite", 99, "")


def test_bad_titles(app, engine):
    client, user = connect(app.url)
    engine.enqueue(ARTICLE_TEXT)
    with pytest.raises(AppError, match="title is empty"):
        write(client, "   ")
    title = "../" + "长" * 300 + "/🐱\x00" + "x" * 200
    write(client, title, image_count="0")
    draft = blocks_of(app, user)
    assert draft.instruction.startswith("../长") and "\x00" not in draft.instruction
    path = client.predict(api_name="/article_export_html")[0]
    assert Path(path).name.endswith(".html") and "/" not in Path(path).name and ".." not in Path(path).name


def test_two_users_at_once_get_their_own_articles(app, engine):
    engine.enqueue(ARTICLE_TEXT, ARTICLE_TEXT)
    a, user = connect(app.url)
    b, _ = connect(app.url)  # without a login both are the local user: two drafts, neither mixed up
    before = {d.id for d in app.services.drafts.list(user)}
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda x: write(x[0], x[1], image_count="0"), [(a, "Title A"), (b, "Title B")]))
    new = [app.services.drafts.load(user, d.id) for d in app.services.drafts.list(user) if d.id not in before]
    assert sorted(d.title for d in new) == ["Title A", "Title B"]
    assert all(d.text().startswith("Cats sleep a lot.") for d in new)


def test_exports_reopen(app, engine):
    client, user = connect(app.url)
    engine.enqueue(*ARTICLE)
    write(client, '=HYPERLINK("http://x")')
    md = client.predict(api_name="/article_export_markdown")[0]
    with zipfile.ZipFile(md) as z:
        text = z.read("article.md").decode()
        refs = [line.split("](")[1].split(")")[0] for line in text.splitlines() if line.startswith("![")]
        assert refs and all(r in z.namelist() for r in refs)
    html = Path(client.predict(api_name="/article_export_html")[0]).read_text(encoding="utf-8")
    imgs = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                imgs.append(dict(attrs)["src"])
    P().feed(html)
    assert imgs and all(s.startswith("data:image/") for s in imgs)
    import openpyxl

    wb = openpyxl.load_workbook(client.predict(api_name="/article_export_xlsx")[0])
    about = wb["About"]
    cells = [c for row in about.iter_rows() for c in row if c.value == '=HYPERLINK("http://x")']
    assert cells and all(c.data_type == "s" for c in cells)
    assert wb["Article"]._images


def test_a_missing_image_file_does_not_break_export(app, engine):
    client, user = connect(app.url)
    engine.enqueue(*ARTICLE)
    write(client, "Missing picture")
    draft = blocks_of(app, user)
    Path(next(b.image.path for b in draft.blocks if b.image)).unlink()
    path, notice = client.predict(api_name="/article_export_html")
    assert "missing on disk" in notice and Path(path).is_file()


def test_drafts_survive_a_restart_and_reopen(app, engine, tmp_path):
    client, user = connect(app.url)
    engine.enqueue(*ARTICLE)
    write(client, "Keep me")
    draft_id = app.services.drafts.list(user)[0].id
    with running_app(app.config_path, app.data_dir) as second:
        again, same = connect(second.url, token=user)
        assert same == user
        listed = again.predict(api_name="/article_drafts")
        assert draft_id in [c[1] for c in listed["choices"]]
        out = again.predict(draft_id, api_name="/article_open")
        assert "Keep me" in out[2] and "<img" in out[2]
        other, _ = connect(second.url)  # another browser, without a login: the same local user
        assert draft_id in [c[1] for c in other.predict(api_name="/article_drafts")["choices"]]
        assert "Keep me" in other.predict(draft_id, api_name="/article_open")[2]


def sources_app(tmp, sources_yaml: str):
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = write_config(tmp, extra="article:\n  sources:\n" + sources_yaml)
    return running_app(cfg, tmp / "data")


def test_broken_gallery_and_html_provider_leave_positions_empty_and_say_why(tmp_path):
    from tests.support.hostile_images import HOSTILE
    from tests.support.image_server import ImageServer

    broken = tmp_path / "broken-gallery"
    broken.mkdir()
    for case in ("truncated_jpeg_half", "text_as_png", "zero_byte"):
        if case in HOSTILE:
            name, make, _ = HOSTILE[case]
            (broken / name).write_bytes(make())
    with ImageServer() as server:
        yaml = (f"    - kind: gallery\n      name: mine\n      folder: {broken}\n"
                f"    - kind: http\n      name: web\n      url_template: {server.url('/html')}?q={{query}}\n"
                "      timeout_s: 2\n")
        with sources_app(tmp_path, yaml) as app:
            client, user = connect(app.url)
            scripted(app.services).enqueue(*ARTICLE)
            _, final = write(client, "Nothing to show")
            notice = final[1]
            assert "No picture found for" in notice and "HTML" in notice, notice
            assert not any(b.image for b in blocks_of(app, user).blocks)
            status = [s.status() for s in app.services.image_sources()]
            assert "broken" in status[0] and "skipped" in status[0], status


def test_http_provider_images_are_used_and_a_slow_one_falls_back_to_the_gallery(tmp_path):
    from tests.support.image_server import ImageServer

    with ImageServer(slow_s=3) as server:
        yaml = f"    - kind: http\n      name: web\n      url_template: {server.url('/search')}?q={{query}}\n"
        with sources_app(tmp_path / "a", yaml) as app:
            client, user = connect(app.url)
            scripted(app.services).enqueue(*ARTICLE)
            write(client, "From the web")
            placed = [b.image for b in blocks_of(app, user).blocks if b.image]
            assert placed and placed[0].source == "http" and Path(placed[0].path).is_file()
        yaml = (f"    - kind: http\n      name: slow\n      url_template: {server.url('/slow')}?q={{query}}\n"
                "      timeout_s: 0.5\n    - kind: gallery\n")
        with sources_app(tmp_path / "b", yaml) as app:
            client, user = connect(app.url)
            scripted(app.services).enqueue(*ARTICLE)
            _, final = write(client, "Slow web")
            assert "timed out" in final[1]
            placed = [b.image for b in blocks_of(app, user).blocks if b.image]
            assert placed and placed[0].source == "gallery"


def test_exporting_an_empty_article_is_a_notice_not_an_error(app, engine):
    client, _ = connect(app.url)
    for kind in ("markdown", "html", "xlsx"):
        path, _notice = client.predict(api_name=f"/article_export_{kind}")  # no error raised
        assert path is None
