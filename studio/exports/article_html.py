"""Article as one self-contained HTML5 file: inline CSS, pictures as data: URIs, nothing fetched."""

from __future__ import annotations

import base64
import re
from html import escape
from html.parser import HTMLParser

import markdown2

from studio.core.article import ArticleDraft, ArticleImage
from studio.exports.article_images import (EncodedImage, ExportResult, article_export, article_title, clean_text,
                                           iso_date, one_line)
from studio.exports.article_markdown import balance_fences

MARKDOWN_MAX_CHARS = 12_000
EXTRAS = ["fenced-code-blocks", "tables", "break-on-newline", "strike", "cuddled-lists"]
# Defence in depth: even if markup slipped through, the browser runs no script and loads nothing.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_BLOCK_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "pre", "table",
               "thead", "tbody", "tfoot", "tr", "th", "td", "div"}
_INLINE_TAGS = {"code", "em", "strong", "b", "i", "del", "s", "sup", "sub", "span"}
_VOID_TAGS = {"br", "hr"}
_CLASS = re.compile(r"[A-Za-z0-9_ -]{1,60}")
_ALIGN = re.compile(r"text-align:\s*(left|right|center);?")
_LINK = re.compile(r"(https?://|mailto:)\S+", re.IGNORECASE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")

CSS = """
:root{color-scheme:light dark;--fg:#1f1f22;--bg:#fcfcfa;--muted:#686870;--rule:#deded9;--code:#f2f2ee}
@media (prefers-color-scheme:dark){:root{--fg:#e4e4e0;--bg:#17171a;--muted:#a2a2a8;--rule:#36363a;--code:#242428}}
body{margin:0;background:var(--bg);color:var(--fg);font:17px/1.75 system-ui,-apple-system,"Segoe UI",
"PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC",sans-serif;overflow-wrap:anywhere}
main{max-width:46rem;margin:0 auto;padding:2.5rem 1.25rem 4rem}
h1{font-size:2rem;line-height:1.25;margin:0 0 .3em}
figure{margin:1.8em 0;text-align:center}
figure img{max-width:100%;height:auto;border-radius:6px}
figcaption{color:var(--muted);font-size:.92rem;font-style:italic;margin-top:.5em}
.missing{border:1px dashed var(--muted);border-radius:6px;padding:2.5em 1em;color:var(--muted)}
pre{background:var(--code);padding:.8em 1em;overflow-x:auto;border-radius:6px;font-size:.88em;line-height:1.5}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
:not(pre)>code{background:var(--code);padding:.1em .3em;border-radius:4px;font-size:.9em}
blockquote{margin:1em 0;padding:0 1em;border-left:3px solid var(--rule);color:var(--muted)}
table{border-collapse:collapse;margin:1em 0;display:block;overflow-x:auto}
th,td{border:1px solid var(--rule);padding:.35em .7em}
footer{color:var(--muted);font-size:.9rem;border-top:1px solid var(--rule);margin-top:3em;padding-top:1em}
@media print{body{background:#fff;color:#000}figure{break-inside:avoid}}
""".strip()


class _Sanitiser(HTMLParser):
    """Rebuilds markdown2's output from an allow-list: known tags, harmless attributes, balanced.

    markdown2's `safe_mode` escapes raw HTML, but links and images written in Markdown still come
    out as `<a href>` / `<img src>` to anywhere. An offline file must not fetch or point outside,
    so links become their text plus the address in brackets and remote images their alt text.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.links: list[tuple[str, list[str]]] = []  # (href, text seen so far) per open <a>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "a":
            self.links.append((found.get("href", ""), []))
        elif tag == "img":
            alt = one_line(found.get("alt", ""), 200)
            self.handle_data(f"[image: {alt}]" if alt else "[image]")
        elif tag in _VOID_TAGS:
            self.out.append(f"<{tag}>")
        elif tag in _BLOCK_TAGS or tag in _INLINE_TAGS:
            self.out.append(f"<{tag}{self._attrs(tag, found)}>")
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.links:
            href, text = self.links.pop()
            if _LINK.fullmatch(href) and href.removeprefix("mailto:") != "".join(text).strip():
                self.out.append(f" ({escape(href)})")
        elif tag in self.open:  # close whatever was left open inside it; a stray end tag is dropped
            while self.open:
                top = self.open.pop()
                self.out.append(f"</{top}>")
                if top == tag:
                    break

    def handle_data(self, data: str) -> None:
        self.out.append(escape(data, quote=False))
        for _, text in self.links:
            text.append(data)

    def _attrs(self, tag: str, found: dict[str, str]) -> str:
        kept = []
        if "class" in found and tag in ("div", "span", "code", "pre") and _CLASS.fullmatch(found["class"]):
            kept.append(f' class="{escape(found["class"])}"')
        align = _ALIGN.fullmatch(found.get("style", "").strip())
        if align and tag in ("th", "td"):
            kept.append(f' style="text-align:{align.group(1)}"')
        if tag == "ol" and found.get("start", "").isdigit():
            kept.append(f' start="{int(found["start"])}"')
        return "".join(kept)

    def result(self) -> str:
        self.close()
        return "".join(self.out + [f"</{tag}>" for tag in reversed(self.open)])


def sanitise(fragment: str) -> str:
    """`fragment` (markdown2 output) reduced to allowed tags and attributes, every element closed."""
    parser = _Sanitiser()
    parser.feed(fragment)
    return parser.result()


def plain_html(text: str) -> str:
    """Cleaned `text` as escaped paragraphs with line breaks, no Markdown at all."""
    paragraphs = [p for p in re.split(r"\n\s*\n", clean_text(text).strip()) if p.strip()]
    return "".join(f"<p>{'<br>'.join(escape(line, quote=False) for line in p.split(chr(10)))}</p>"
                   for p in paragraphs)


def paragraph_html(converter: markdown2.Markdown, text: str) -> tuple[str, str]:
    """One paragraph as safe HTML, and "" or why it is shown as plain text instead of Markdown."""
    text = balance_fences(text)
    # markdown2 is superlinear on some inputs (thousands of unclosed links take seconds) and recurses
    # per nesting level; a model's paragraph is far below the cap, a pasted book is not.
    if len(text) > MARKDOWN_MAX_CHARS:
        return plain_html(text), f"is very long ({len(text):,} characters)"
    try:
        return sanitise(converter.convert(text)), ""
    except (RecursionError, ValueError, IndexError, KeyError, re.error):
        return plain_html(text), "could not be read as Markdown"


def _figure(image: ArticleImage, encoded: EncodedImage | None) -> str:
    caption = escape(one_line(image.caption))
    if encoded is None:
        body = '<div class="missing" role="img" aria-label="image missing">Image missing</div>'
    else:
        uri = f"data:{encoded.mime};base64,{base64.b64encode(encoded.data).decode('ascii')}"
        body = f'<img src="{uri}" alt="{escape(one_line(image.caption), quote=True)}" ' \
               f'width="{encoded.width}" height="{encoded.height}">'
    return f"<figure>{body}" + (f"<figcaption>{caption}</figcaption>" if caption else "") + "</figure>"


def _footer(draft: ArticleDraft) -> str:
    bits = []
    if one_line(draft.model):
        bits.append(f"Written by {escape(one_line(draft.model))}")
    if one_line(draft.engine):
        bits.append(f"engine {escape(one_line(draft.engine))}")
    for label, stamp in (("created", draft.created), ("last edited", draft.updated)):
        date = iso_date(stamp)
        if date:
            bits.append(f'{label} <time datetime="{date}">{date[:10]}</time>')
    bits.append("exported from Puyu Studio")
    return "<footer>" + " · ".join(bits) + "</footer>"


def article_html_text(draft: ArticleDraft, images: list[EncodedImage | None]) -> tuple[str, list[str]]:
    """The HTML5 document for `draft` with the given re-encoded pictures (None: missing), and warnings."""
    title = escape(article_title(draft))
    converter = markdown2.Markdown(safe_mode="escape", extras=EXTRAS)
    body = [f"<h1>{title}</h1>"]
    warnings = []
    for index, (block, encoded) in enumerate(zip(draft.blocks, images)):
        if clean_text(block.text).strip():
            html, problem = paragraph_html(converter, block.text)
            body.append(f"<section>{html}</section>")
            if problem:
                warnings.append(f"Paragraph {index + 1} {problem}; the HTML shows it as plain text.")
        if block.image is not None:
            body.append(_figure(block.image, encoded))
    lang = "zh" if len(_CJK.findall(draft.text())) > len(draft.text()) // 10 else "en"
    return "\n".join([
        "<!DOCTYPE html>", f'<html lang="{lang}">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">', '<meta name="generator" content="Puyu Studio">',
        f"<title>{title}</title>", f"<style>\n{CSS}\n</style>", "</head>", "<body>", "<main>", "<article>",
        *body, "</article>", _footer(draft), "</main>", "</body>", "</html>", "",
    ]), warnings


def article_html(draft: ArticleDraft) -> ExportResult:
    """The article as one offline-readable HTML5 file (UTF-8) with its pictures inlined."""
    return article_export(draft, "html", _html_bytes)


def _html_bytes(draft: ArticleDraft, images: list[EncodedImage | None]) -> tuple[bytes, list[str]]:
    text, warnings = article_html_text(draft, images)
    return text.encode("utf-8"), warnings
