"""Homework bundle: a zip with a screenshot-ready HTML page and the JSON record it shows (record.json).

Pure: the record (plain JSON-ready data, gathered by studio.tasks.homework) and the page's words come
in; bytes go out. The page is light, printable and self-contained like the article HTML export.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from html import escape
from typing import Any, Mapping, Optional

import markdown2

from studio.core.article import ArticleDraft
from studio.exports.article_html import CSP, EXTRAS, paragraph_html
from studio.exports.article_images import EncodedImage, ExportResult, block_images, clean_text, one_line
from studio.exports.filenames import safe_stem

FORMAT = "puyu-studio.homework"
VERSION = 1
HTML_NAME = "homework.html"
JSON_NAME = "record.json"
DASH = "—"  # a fact not known (a reply stored before timings were kept, a model not loaded yet)
LABEL_KEYS = ("heading", "exported", "environment", "model", "folder", "family", "engine", "backend", "device",
              "gpu", "versions", "sampling", "system_prompt", "transcript", "article", "config", "role_user",
              "role_assistant", "role_system", "role_tool", "tokens", "prompt_tokens", "first_token", "seconds",
              "speed", "finish", "partial", "footer", "instruction")

CSS = """
body{margin:0;background:#fff;color:#1f1f22;font:16px/1.7 system-ui,-apple-system,"Segoe UI","PingFang SC",
"Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC",sans-serif;overflow-wrap:anywhere}
main{max-width:50rem;margin:0 auto;padding:2rem 1.25rem 3rem}
h1{font-size:1.8rem;line-height:1.25;margin:.1em 0 .2em}
h2{font-size:1.15rem;margin:2em 0 .6em;padding-bottom:.2em;border-bottom:1px solid #deded9}
.kicker{color:#2563eb;font-weight:600;letter-spacing:.04em;margin:0}.meta{color:#686870;margin:0}
table{border-collapse:collapse;width:100%;font-size:.93rem}
th,td{border:1px solid #deded9;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f6f6f3;font-weight:600;width:42%}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:0 1.5rem}
.msg{border:1px solid #deded9;border-radius:8px;margin:.9em 0;padding:.6em 1em;break-inside:avoid}
.msg.user{background:#f3f6fd}.msg.system{background:#fbf8ef}.msg.tool{background:#f6f6f3}
.role{font-weight:600;font-size:.85rem;color:#525258;text-transform:uppercase;letter-spacing:.05em}
.stats{color:#525258;font-size:.85rem;margin:.4em 0 0;font-variant-numeric:tabular-nums}
.partial{color:#b45309;font-size:.85rem}
pre{background:#f4f4f0;padding:.7em .9em;overflow-x:auto;border-radius:6px;font-size:.86em;line-height:1.5;
white-space:pre-wrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace}
:not(pre)>code{background:#f4f4f0;padding:.1em .3em;border-radius:4px;font-size:.9em}
blockquote{margin:1em 0;padding:0 1em;border-left:3px solid #deded9;color:#525258}
figure{margin:1.4em 0;text-align:center}figure img{max-width:100%;height:auto;border-radius:6px}
figcaption{color:#686870;font-size:.9rem;font-style:italic}
footer{color:#686870;font-size:.85rem;border-top:1px solid #deded9;margin-top:2.5em;padding-top:.8em}
@media print{main{max-width:none;padding:0}.msg,figure,table{break-inside:avoid}}
""".strip()


def _code_css() -> str:
    """Colours for markdown2's highlighted code (Pygments classes); none when Pygments is absent."""
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:  # code stays monospaced, only uncoloured
        return ""
    return HtmlFormatter(style="default").get_style_defs(".codehilite")


def _text(value: Any) -> str:
    """A record value as one escaped line; DASH for a missing one."""
    if value is None or value == "" or value == []:
        return DASH
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return escape(one_line(str(value)))


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{_text(v)}</td></tr>" for k, v in rows) + "</table>"


def _environment(record: Mapping, labels: Mapping[str, str]) -> str:
    model, engine, device = record.get("model", {}), record.get("engine", {}), record.get("device", {})
    rows = [(labels["model"], model.get("name")), (labels["folder"], model.get("folder")),
            (labels["family"], model.get("family")), (labels["engine"], engine.get("engine")),
            (labels["backend"], engine.get("backend")), (labels["device"], device.get("device")),
            (labels["gpu"], device.get("gpu") or device.get("gpus"))]
    rows += [(f"{name} {labels['versions']}", v) for name, v in record.get("versions", {}).items()]
    return f"<h2>{escape(labels['environment'])}</h2>" + _table(rows)


def _number(value: Any, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else DASH


def stats_line(stats: Optional[Mapping], labels: Mapping[str, str]) -> str:
    """A reply's timing as one line: tokens, time to first token, total time, speed, finish; DASH where unknown."""
    s = stats or {}
    bits = [(labels["tokens"], _number(s.get("completion_tokens"), "{:d}")),
            (labels["prompt_tokens"], _number(s.get("prompt_tokens"), "{:d}")),
            (labels["first_token"], _number(s.get("first_token_s"), "{:.2f} s")),
            (labels["seconds"], _number(s.get("seconds"), "{:.2f} s")),
            (labels["speed"], _number(s.get("tokens_per_s"), "{:.1f} tok/s")),
            (labels["finish"], escape(str(s.get("finish_reason") or DASH)))]
    return " · ".join(f"{escape(k)}: {v}" for k, v in bits)


def _message(item: Mapping, converter: markdown2.Markdown, labels: Mapping[str, str]) -> str:
    role = str(item.get("role") or "user")
    text = clean_text(str(item.get("content") or ""))
    if role == "tool":  # program output: shown exactly, not read as Markdown
        body = f"<pre><code>{escape(text)}</code></pre>"
    else:
        body = paragraph_html(converter, text)[0] if text.strip() else ""
    parts = [f'<div class="role">{escape(labels.get(f"role_{role}", role))}</div>', body]
    if item.get("partial"):
        parts.append(f'<p class="partial">{escape(labels["partial"])}</p>')
    if role == "assistant":
        parts.append(f'<p class="stats">{stats_line(item.get("stats"), labels)}</p>')
    return f'<div class="msg {escape(role)}">{"".join(parts)}</div>'


def _figure(caption: str, encoded: Optional[EncodedImage]) -> str:
    if encoded is None:
        return ""
    uri = f"data:{encoded.mime};base64,{base64.b64encode(encoded.data).decode('ascii')}"
    alt = escape(one_line(caption), quote=True)
    img = f'<img src="{uri}" alt="{alt}" width="{encoded.width}" height="{encoded.height}">'
    return f"<figure>{img}<figcaption>{escape(one_line(caption))}</figcaption></figure>"


def _document(record: Mapping, labels: Mapping[str, str], lang: str, content: list[str]) -> str:
    """The whole page: heading, environment, sampling, `content` (transcript or article), config."""
    title = escape(one_line(str(record.get("title") or "")) or labels["heading"])
    sampling = [(k, v) for k, v in (record.get("sampling") or {}).items()]
    config = escape(json.dumps(record.get("config", {}), ensure_ascii=False, indent=2))
    return "\n".join([
        "<!DOCTYPE html>", f'<html lang="{escape(lang)}">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light">', '<meta name="generator" content="Puyu Studio">',
        f"<title>{title}</title>", f"<style>\n{CSS}\n{_code_css()}\n</style>", "</head>", "<body>", "<main>",
        f'<header><p class="kicker">{escape(labels["heading"])}</p><h1>{title}</h1>'
        f'<p class="meta">{escape(labels["exported"])}: {_text(record.get("exported_at"))}</p></header>',
        *content, '<div class="facts">', f"<section>{_environment(record, labels)}</section>",
        f"<section><h2>{escape(labels['sampling'])}</h2>{_table(sampling)}</section>", "</div>",
        f"<h2>{escape(labels['config'])}</h2>", f"<pre><code>{config}</code></pre>",
        f"<footer>{escape(labels['footer'])}</footer>", "</main>", "</body>", "</html>", "",
    ])


def _zip(record: Mapping, html: str, title: str) -> ExportResult:
    """The bundle: the page and the record, named after the title."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(HTML_NAME, html.encode("utf-8", "replace"))
        data = json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8", "surrogatepass")
        zf.writestr(JSON_NAME, data.decode("utf-8", "replace").encode("utf-8"))
    stem = safe_stem(one_line(title), fallback="homework", max_len=60)
    return ExportResult(buf.getvalue(), f"{stem}-homework.zip")


def conversation_bundle(record: Mapping, labels: Mapping[str, str], lang: str = "en") -> ExportResult:
    """The zip for a conversation record (studio.tasks.homework.conversation_record)."""
    converter = markdown2.Markdown(safe_mode="escape", extras=EXTRAS)
    content = [f"<h2>{escape(labels['transcript'])}</h2>"]
    if record.get("system_prompt"):
        content.append(_message({"role": "system", "content": record["system_prompt"]}, converter, labels))
    content += [_message(item, converter, labels) for item in record.get("transcript", [])]
    return _zip(record, _document(record, labels, lang, content), str(record.get("title") or ""))


def article_bundle(draft: ArticleDraft, record: Mapping, labels: Mapping[str, str], lang: str = "en"
                   ) -> ExportResult:
    """The zip for an article record, the draft's pictures inlined in the page."""
    converter = markdown2.Markdown(safe_mode="escape", extras=EXTRAS)
    images, warnings = block_images(draft)
    content = [f"<h2>{escape(labels['article'])}</h2>"]
    if one_line(draft.instruction):
        content.append(f"<p><strong>{escape(labels['instruction'])}:</strong> {escape(one_line(draft.instruction))}</p>")
    for block, encoded in zip(draft.blocks, images):
        if clean_text(block.text).strip():
            content.append(f"<section>{paragraph_html(converter, block.text)[0]}</section>")
        if block.image is not None:
            content.append(_figure(block.image.caption, encoded))
    result = _zip(record, _document(record, labels, lang, content), str(record.get("title") or ""))
    return ExportResult(result.data, result.filename, warnings)
