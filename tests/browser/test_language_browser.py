"""Every visible string in the page's language: in 中文 no English UI text, in English no Chinese, on every
tab with its accordions open, on the embedded model (model output and user data aside)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.apps import EMBEDDED_CONFIG, REPO, running_app, write_config
from tests.support.waits import wait_in_page, wait_until

pytestmark = pytest.mark.browser
ARTIFACTS = Path(os.environ.get("PUYU_TEST_ARTIFACTS", REPO / "test-artifacts"))

# Latin words the Chinese UI may show, compared case-insensitively, by group.
ALLOWED_LATIN = frozenset(w.lower() for w in (
    # Product, model and library names.
    "Puyu", "Studio", "InternLM", "SmolLM", "InternVL", "XComposer", "Gradio", "lmdeploy", "Transformers",
    "ReAct", "ArXiv", "Python", "Jupyter", "Landlock", "seccomp", "Hugging", "Face", "ModelScope",
    # File formats and data formats.
    "JSON", "Schema", "Markdown", "HTML", "Excel", "xlsx", "zip", "CSV", "gguf",
    # Hardware and memory units.
    "GPU", "CPU", "RAM", "cuda", "GiB", "MiB", "KV", "TCP",
    # Generation terms kept in English in Chinese technical writing.
    "Top-p", "Top-k", "token", "tokens", "ctx", "tok/s", "Beam", "auto", "OCR", "API",
    # Keys named in input hints, and the language switch itself.
    "Shift", "Enter", "EN",
    # Engine names the header and System tab show (their identifiers, as in the config).
    "hf",
    # The paper the lesson's agent example searches for (its title is the query).
    "Technical", "Report",
))
# Tooltips of Gradio's own component buttons (gr.Code's, gr.Chatbot's, gr.Gallery's, a Markdown code block's):
# Gradio words them by the browser's locale, not by the page's language switch.
GRADIO_TOOLTIPS = frozenset({"Copy", "Download", "copy", "Copy message", "Copy conversation", "Download All"})
# Chinese the English UI may show: bilingual names of the lesson's features, and the language switch.
ALLOWED_CJK = ("图文创作", "智能体", "数据分析", "中文", "浦语")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_+\-/'.]*[A-Za-z0-9]|[A-Za-z]")
CJK = re.compile(r"[\u3400-\u9fff]+")
# Model output and user data: transcripts, the article preview, code and commands, editable values, what the
# model wrote inside a step, list titles (a conversation is titled by its first message), the gallery's captions.
OUTSIDE_UI = ("[data-testid='bot']", "[data-testid='user']", "#article-preview", "code", "pre", ".cm-editor",
              "#system-engine", ".model-text", ".item-title", "#article-candidates .caption-label",
              ".toast-title-row")  # Gradio 6.31 heads a toast with its type ("Error"), whatever the title
# Placeholders that hold the official prompt text the model receives (model input), not UI text.
PROMPT_BOXES = ("#agent-system-prompt", "#agent-plugin-prompt", "#agent-interpreter-prompt")

VISIBLE_TEXT_JS = """([outside, prompts, gradio]) => {
  const shown = el => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden') return false;
    }
    const r = el.getBoundingClientRect();  // screen-reader-only text is clipped to a pixel
    return r.width > 1 && r.height > 1;
  };
  const skip = el => el.closest(outside.join(',')) || el.closest('script,style,noscript,svg');
  const where = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    ((el.closest('[id]') || {}).id ? ' in #' + el.closest('[id]').id : '');
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement, text = walker.currentNode.textContent.trim();
    if (text && el && !skip(el) && shown(el)) out.push([text, where(el)]);
  }
  for (const el of document.querySelectorAll('[placeholder]')) {
    if (el.placeholder && shown(el) && !el.closest(prompts.join(','))) out.push([el.placeholder, 'placeholder ' + where(el)]);
  }
  // Tooltips of icon-only buttons: the only text they show.
  for (const el of document.querySelectorAll('button[title]')) {
    if (!el.innerText.trim() && shown(el) && !skip(el) && !gradio.includes(el.title)) {
      out.push([el.title, 'tooltip ' + where(el)]);
    }
  }
  return out;
}"""


def _english(texts: list, config_words: set[str], label: str) -> list:
    """(word, text, where) for each Latin word outside the allowlist. Not words: the model's label and the
    config's engine names (user data), identifiers with digits, '_' or '.' (model names, dtypes, file names),
    single letters (a variable in a maths example) and {placeholders} a template must contain."""
    found = []
    for text, where in texts:
        for word in WORD.findall(re.sub(r"\{\w+\}", " ", text.replace(label, " "))):
            if re.search(r"[\d_.]", word) or len(word) == 1 or word.lower() in ALLOWED_LATIN | config_words:
                continue
            found.append((word, text[:80], where))
    return found


def _chinese(texts: list) -> list:
    found = []
    for text, where in texts:
        rest = text
        for name in ALLOWED_CJK:
            rest = rest.replace(name, "")
        found += [(run, text[:80], where) for run in CJK.findall(rest)]
    return found


def _open_everything(page) -> None:
    """Open every closed accordion on the tab shown now."""
    for button in page.locator("button.label-wrap:visible").all():
        if "open" not in (button.get_attribute("class") or ""):
            button.click()
    page.wait_for_timeout(300)


def _collect_all_tabs(page, lang: str) -> list:
    texts = []
    tabs = page.get_by_role("tab")
    for i in range(tabs.count()):
        tabs.nth(i).click()
        page.wait_for_timeout(800)
        _open_everything(page)
        texts += page.evaluate(VISIBLE_TEXT_JS, [list(OUTSIDE_UI), list(PROMPT_BOXES), sorted(GRADIO_TOOLTIPS)])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"language-{lang}-tab{i}.png"), full_page=True)
    return texts


def _ready(page) -> None:
    wait_in_page(page, page.locator("#model-status .status-ready"), "the model to be ready", visible=True)


@pytest.fixture(scope="module")
def embedded_app(tmp_path_factory, embedded_cache_dir):
    with running_app(EMBEDDED_CONFIG, tmp_path_factory.mktemp("lang") / "data", cache_dir=embedded_cache_dir) as app:
        yield app


def test_chinese_mode_shows_no_english_ui_text(page, embedded_app):
    page.goto(embedded_app.url)
    _ready(page)
    page.locator("#lang-toggle").click()  # saves 中文 and reloads the page
    wait_until(lambda: page.evaluate("document.documentElement.lang").startswith("zh"), "the page in 中文")
    _ready(page)
    pool = embedded_app.services.engines
    found = _english(_collect_all_tabs(page, "zh"), set(pool.names()), pool.label("chat"))
    assert not found, "English in the 中文 UI:\n" + "\n".join(f"{w!r} in {t!r} ({at})" for w, t, at in found)


def test_english_mode_shows_no_chinese_ui_text(page, embedded_app):
    page.goto(embedded_app.url)
    _ready(page)
    found = _chinese(_collect_all_tabs(page, "en"))
    assert not found, "Chinese in the English UI:\n" + "\n".join(f"{w!r} in {t!r} ({at})" for w, t, at in found)


# Each header cell's text, and how many lines it takes (a header broken mid-word takes two).
HEADER_LINES_JS = """() => [...document.querySelectorAll('.system-table th')].filter(th => th.offsetParent).map(th => {
  const range = document.createRange();
  range.selectNodeContents(th);
  const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
  return [th.innerText, tops.size];
})"""


@pytest.mark.parametrize("width, height", [(1366, 768), (1920, 1080)])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_system_table_headers_stay_on_one_line(page, embedded_app, lang, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(embedded_app.url)
    page.evaluate(f"localStorage.setItem('puyu-lang', '{lang}')")
    page.reload()
    _ready(page)
    page.locator("button[role='tab']").last.click()  # System
    wait_in_page(page, page.locator("#system-models .status-ready"), "the models table", visible=True)
    headers = page.evaluate(HEADER_LINES_JS)
    assert len(headers) == 14, headers  # both tables' headers, in the page's language only
    assert all(lines == 1 for _, lines in headers), headers
    page.screenshot(path=str(ARTIFACTS / f"system-{lang}-{width}.png"), full_page=True)


def _chinese_page(page, url: str) -> None:
    page.goto(url)
    page.evaluate("localStorage.setItem('puyu-lang', 'zh')")
    page.reload()
    wait_until(lambda: page.evaluate("document.documentElement.lang").startswith("zh"), "the page in 中文")
    _ready(page)


def _shown(page, step: str) -> list:
    """The visible texts of the tab shown now, its accordions open; a screenshot of it as `step`."""
    _open_everything(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"language-zh-{step}.png"), full_page=True)
    return [(text, f"{where} after {step}")
            for text, where in page.evaluate(VISIBLE_TEXT_JS, [list(OUTSIDE_UI), list(PROMPT_BOXES),
                                                                sorted(GRADIO_TOOLTIPS)])]


def _bots(page) -> list[str]:
    return page.get_by_test_id("bot").all_inner_texts()


@pytest.fixture(scope="module")
def scripted_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lang-scripted")
    with running_app(write_config(tmp, model_path="script:slow"), tmp / "data") as app:
        yield app


def test_chinese_mode_after_a_reply_a_stop_a_regenerate_an_article_and_the_image_tab(page, scripted_app):
    from tests.browser.helpers import start_new_chat
    from tests.support.scripted import ARTICLE, scripted

    app, engine = scripted_app, scripted(scripted_app.services)
    _chinese_page(page, app.url)
    start_new_chat(page)
    texts = []
    engine.enqueue("short reply")
    page.locator("#chat-input textarea").fill("hello")
    page.locator("#chat-input textarea").press("Enter")
    wait_until(lambda: any("short reply" in b for b in _bots(page)) and page.locator(".reply-stats").count() == 1,
               "the first reply and its stats line", step=0.3)
    texts += _shown(page, "reply")
    page.locator("#chat-input textarea").fill("a long one")  # nothing queued: 200 slow words
    page.locator("#chat-input textarea").press("Enter")
    wait_until(lambda: len(_bots(page)) == 2 and "w1" in _bots(page)[-1], "the long reply to start", step=0.2)
    page.locator("#stop-btn").click()
    wait_until(lambda: page.locator(".reply-stats").count() == 2, "the stopped reply's stats line", step=0.3)
    texts += _shown(page, "stop")
    engine.enqueue("again")
    page.locator("#regen-btn").click()
    wait_until(lambda: "again" in _bots(page)[-1] and page.locator(".reply-stats").count() == 2,
               "the regenerated reply", step=0.3)
    texts += _shown(page, "regenerate")

    page.get_by_role("tab", name="图文创作").click()
    page.locator("#article-write").click()  # no title yet: an error toast
    wait_in_page(page, page.locator(".toast-body").first, "the empty-title toast", text="标题是空的")
    texts += _shown(page, "article-error")
    # Images on auto: the model's positions name a paragraph that does not exist, which warns.
    engine.enqueue(*ARTICLE)
    page.locator("#article-title textarea").fill("周末的猫和咖啡")
    page.locator("#article-write").click()
    wait_in_page(page, page.locator("#article-steps"), "the last article step", text="✓ 为每处选定一张图")
    wait_in_page(page, page.locator("#article-notice"), "the ignored-position notice", text="99")
    texts += _shown(page, "article")

    page.get_by_role("tab", name="图像理解").click()
    page.wait_for_timeout(800)
    texts += _shown(page, "image-tab")
    info = app.services.engines.get("chat").info()  # the header names the engine kind and dtype as configured
    found = _english(texts, set(app.services.engines.names()) | {info.engine, info.dtype},
                     app.services.engines.label("chat"))
    assert not found, "English in the 中文 UI:\n" + "\n".join(f"{w!r} in {t!r} ({at})" for w, t, at in found)
