"""The article tab's read-only views: the article preview (safe HTML, thumbnails inlined) and the step list."""

from __future__ import annotations

import base64
from html import escape

from studio.core.article import ArticleDraft
from studio.tasks.article import STEPS, Step

PREVIEW_SIDE = 480
STEP_NAMES = {"write": "Write the text", "split": "Split into paragraphs", "positions": "Choose image positions",
              "captions": "Write captions", "images": "Find candidate images", "select": "Choose one image each"}
ICONS = {"running": "⏳", "done": "✅", "skipped": "⏭️", "failed": "❌", "cancelled": "⏹️"}
STATUS_MARKS = {"writing": " · ⏳ unfinished", "stopped": " · ⏹️ stopped", "failed": " · ❌ failed"}


def preview_html(draft: ArticleDraft, placeholder: str = "") -> str:
    """The draft as HTML: each paragraph numbered, its image (or "missing") and caption below it."""
    import markdown2

    from studio.exports.article_html import EXTRAS, paragraph_html
    from studio.exports.article_images import block_images

    if not draft.blocks:
        if draft.status:  # stored before the model wrote anything: say so under its title
            return (f"<h2 class='article-title'>{escape(draft.title or draft.instruction)}</h2>"
                    "<div class='article-empty'>No text yet.</div>")
        return f"<div class='article-empty'>{escape(placeholder)}</div>"
    images, _ = block_images(draft, PREVIEW_SIDE)
    converter = markdown2.Markdown(safe_mode="escape", extras=EXTRAS)
    out = [f"<h2 class='article-title'>{escape(draft.title or draft.instruction)}</h2>"]
    for i, (block, enc) in enumerate(zip(draft.blocks, images)):
        body, _ = paragraph_html(converter, block.text)
        out.append(f"<div class='article-block' data-block='{i}'><span class='block-no'>¶{i + 1}</span>{body}</div>")
        if block.image is not None:
            cap = escape(block.image.caption)
            if enc is None:
                body = "<div class='article-missing'>image missing</div>"
            else:
                uri = f"data:{enc.mime};base64,{base64.b64encode(enc.data).decode('ascii')}"
                body = f"<img src='{uri}' alt='{cap}'>"
            out.append(f"<figure class='article-figure'>{body}<figcaption>{cap}</figcaption></figure>")
    return "\n".join(out)


def steps_markdown(steps: dict[str, Step]) -> str:
    """The pipeline's steps with their state, time and detail."""
    if not steps:
        return ""
    lines = []
    for key in STEPS:
        st = steps.get(key)
        if st is None:
            lines.append(f"- ⬜ {STEP_NAMES[key]}")
            continue
        took = f" · {st.seconds:.1f} s" if st.seconds else ""
        detail = f" · {st.detail[:120]}" if st.detail else ""
        lines.append(f"- {ICONS[st.state]} {STEP_NAMES[key]}{took}{detail}")
    return "\n".join(lines)


def status_notice(draft: ArticleDraft) -> str:
    """What a reopened draft says about how its writing ended ("" when it finished)."""
    step = STEP_NAMES.get(draft.step, "Start")
    kept = "what you see is what was written by then" if draft.blocks else "no text had been written yet"
    what = {"writing": "was interrupted", "stopped": "was stopped",
            "failed": "failed"}.get(draft.status)
    if what is None:
        return ""
    return (f"Writing this article {what} at step “{step}”; {kept}. "
            "To finish it, Write again (a new draft), or edit what is there.")


def block_choices(draft: ArticleDraft) -> list[tuple[str, int]]:
    """(label, index) pairs for the paragraph picker."""
    out = []
    for i, b in enumerate(draft.blocks):
        words = " ".join(b.text.split())[:48]
        out.append((f"¶{i + 1}{' 🖼' if b.image else ''} · {words}", i))
    return out
