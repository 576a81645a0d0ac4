"""An ASGI middleware that puts a script at the top of the page's <head>.

gr.I18n picks the UI language from navigator.language when the app bundle starts, and Gradio adds
launch(head=…) only after that, so a language choice (--lang, or the sidebar toggle saved in
localStorage) must be in place before the bundle runs: this middleware writes it into the HTML.
"""

from __future__ import annotations

from typing import Optional

LANG_SCRIPT = """<script>
(() => {
  const saved = localStorage.getItem('puyu-lang') || %s;
  const lang = saved || ((navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en');
  // The server renders some text itself (notices, reply stats): the cookie tells it the page's language.
  document.cookie = 'puyu-lang=' + lang + '; path=/; SameSite=Lax';
  // Text rendered once for every page carries both languages; theme.css shows the one of html[lang].
  document.documentElement.lang = lang;
  if (!saved) return;
  const tag = lang === 'zh' ? 'zh-CN' : 'en';
  Object.defineProperty(navigator, 'language', {get: () => tag, configurable: true});
  Object.defineProperty(navigator, 'languages', {get: () => [tag], configurable: true});
})();
</script>"""


def lang_script(default: Optional[str]) -> str:
    """The script that fixes navigator.language to the saved or default UI language."""
    return LANG_SCRIPT % (f"'{default}'" if default in ("en", "zh") else "null")


class EarlyScriptMiddleware:
    """Insert `script` right after <head> in HTML pages served at the root path."""

    def __init__(self, app, script: str) -> None:
        self.app = app
        self.script = script.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path", "") not in ("/", ""):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                body = body.replace(b"<head>", b"<head>" + self.script, 1)
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
