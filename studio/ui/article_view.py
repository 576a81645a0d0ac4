"""The article tab's read-only views: the article preview (safe HTML, thumbnails inlined) and the step list."""

from __future__ import annotations

import base64
from html import escape
from typing import Optional

from gradio.i18n import I18nData

from studio.core.article import ArticleDraft
from studio.core.types import Notice
from studio.errors import StudioError
from studio.tasks.article import STEPS, Step
from studio.tasks.article_plan import Estimate
from studio.ui.errors import error_text
from studio.ui.i18n import strings, tr

PREVIEW_SIDE = 480
# Plain marks, not emoji (an emoji needs a font that many machines lack); the state is also said in words.
MARKS = {"running": "▸", "done": "✓", "skipped": "–", "failed": "✗", "cancelled": "■", "pending": "○",
         "not_run": "○"}
# How a draft's writing ended, for the drafts list: a plain mark and the word (no emoji, see MARKS).
STATUS_MARKS = {"writing": "…", "stopped": MARKS["cancelled"], "failed": MARKS["failed"]}


def preview_html(draft: ArticleDraft, lang: Optional[str] = None) -> str:
    """The draft as HTML: each paragraph numbered, its image (or "missing") and its whole caption below it;
    an empty draft shows what to do (in `lang`; None: in the page's language, translated by the browser)."""
    import markdown2

    from studio.exports.article_html import EXTRAS, paragraph_html
    from studio.exports.article_images import block_images

    if not draft.blocks:
        if draft.status:  # stored before the model wrote anything: say so under its title
            return (f"<h2 class='article-title'>{escape(draft.title or draft.instruction)}</h2>"
                    f"<div class='article-empty'>{escape(tr(lang or 'en', 'article_no_text'))}</div>")
        return tr(lang, "article_empty_html") if lang else str(I18nData("article_empty_html"))
    images, _ = block_images(draft, PREVIEW_SIDE)
    converter = markdown2.Markdown(safe_mode="escape", extras=EXTRAS)
    out = [f"<h2 class='article-title'>{escape(draft.title or draft.instruction)}</h2>"]
    for i, (block, enc) in enumerate(zip(draft.blocks, images)):
        body, _ = paragraph_html(converter, block.text)
        out.append(f"<div class='article-block' data-block='{i}'><span class='block-no'>¶{i + 1}</span>{body}</div>")
        if block.image is not None:
            cap = escape(block.image.caption)
            if enc is None:
                body = f"<div class='article-missing'>{escape(tr(lang or 'en', 'article_image_missing'))}</div>"
            else:
                uri = f"data:{enc.mime};base64,{base64.b64encode(enc.data).decode('ascii')}"
                body = f"<img src='{uri}' alt='{cap}'>"
            out.append(f"<figure class='article-figure'>{body}<figcaption>{cap}</figcaption></figure>")
    return "\n".join(out)


def steps_markdown(steps: dict[str, Step], lang: str = "en") -> str:
    """The pipeline's steps with their state, time and detail (steps after a stop or a failure: not run)."""
    if not steps:
        return ""
    ended = any(st.state in ("cancelled", "failed") for st in steps.values())
    lines = []
    for key in STEPS:
        st = steps.get(key)
        name = tr(lang, f"article_step_{key}")
        if st is None:
            state = "not_run" if ended else "pending"
            lines.append(f"- {MARKS[state]} {name} · {tr(lang, f'article_state_{state}')}")
            continue
        took = f" · {st.seconds:.1f} s" if st.seconds else ""
        words = f" · **{tr(lang, f'article_state_{st.state}')}**" if st.state in ("cancelled", "failed") else ""
        detail = f" · {detail_text(st, lang)}" if st.detail else ""
        lines.append(f"- {MARKS[st.state]} {name}{words}{took}{detail}")
    return "\n".join(lines)


# Values the model wrote (its captions, its answer): marked so the page (and its language check) tells them
# from the UI's own words.
MODEL_VALUES = ("captions", "answer")


def detail_text(st: Step, lang: str) -> str:
    """A step's detail as safe Markdown in `lang`: a failure's reason worded like its toast."""
    if st.detail == "article_d_failed" and isinstance(st.args.get("error"), StudioError):
        return escape(error_text(st.args["error"], lang), quote=False)
    args = {k: f"<span class='model-text'>{escape(str(v))}</span>" if k in MODEL_VALUES
            else escape(v, quote=False) if isinstance(v, str) else v for k, v in st.args.items() if k != "error"}
    return tr(lang, st.detail, **args)


def status_notice(draft: ArticleDraft, lang: str = "en") -> str:
    """What a reopened draft says about how its writing ended, in `lang` ("" when it finished)."""
    if draft.status not in STATUS_MARKS:
        return ""
    step = tr(lang, f"article_step_{draft.step}") if draft.step in STEPS else tr(lang, "article_reopen_start")
    kept = tr(lang, "article_reopen_kept" if draft.blocks else "article_reopen_nothing")
    return tr(lang, f"article_reopen_{draft.status}", step=step, kept=kept)


def draft_label(title: str, blocks: int, images: int, status: str, lang: str = "en") -> str:
    """A draft's line in the drafts picker: title, paragraphs, images and how its writing ended."""
    ended = f" · {STATUS_MARKS[status]} {tr(lang, f'draft_status_{status}')}" if status in STATUS_MARKS else ""
    return f"{title or tr(lang, 'article_untitled')} · {blocks}¶ {images}▣{ended}"


def block_choices(draft: ArticleDraft) -> list[tuple[str, int]]:
    """(label, index) pairs for the paragraph picker."""
    out = []
    for i, b in enumerate(draft.blocks):
        words = " ".join(b.text.split())[:48]
        out.append((f"¶{i + 1}{' ▣' if b.image else ''} · {words}", i))  # ▣: has a picture (not an emoji)
    return out


def language_name(lang: str, code: str) -> str:
    """A language code's name in `lang` (the code itself for one without a name here)."""
    key = f"article_lang_{code}"
    return tr(lang, key) if key in strings("en") else code


def notice_words(notice: Notice, lang: str) -> str:
    """A task's notice in `lang` (language codes in its values named); its English text when it has no key."""
    if notice.key not in strings("en"):
        return notice.text
    args = {k: language_name(lang, v) if k in ("language", "writes") else v for k, v in notice.args.items()}
    return tr(lang, notice.key, **args)


def duration(seconds: float, lang: str) -> str:
    """Rounded for an estimate: 5-second steps under 90 s, else minutes."""
    if seconds < 90:
        return tr(lang, "article_seconds", n=max(5, int(round(seconds / 5)) * 5))
    return tr(lang, "article_minutes", n=max(2, int(round(seconds / 60))))


def estimate_markdown(est: Optional[Estimate], model: str, lang: str, language: Optional[str] = None,
                      writes: str = "") -> str:
    """The time Write will take (or that it is not known yet), and a warning when the model cannot write
    the title's language."""
    if est is None:
        lines = [tr(lang, "article_estimate_unknown")]
    else:
        how = tr(lang, "article_estimate_measured" if est.measured else "article_estimate_configured")
        lines = [tr(lang, "article_estimate", time=duration(est.seconds, lang), model=model, tokens=est.tokens,
                    speed=est.tokens_per_s, how=how)]
    if language:
        said = Notice("", "warning", key="article_n_language",
                      args={"language": language, "model": model, "writes": writes})
        lines.append("**" + notice_words(said, lang) + "**")
    return "  \n".join(lines)
