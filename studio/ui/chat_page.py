"""The chat's page-side parts: the generating state while a reply runs, Escape to stop it, clean copies."""

from __future__ import annotations

import time
from dataclasses import dataclass

from studio.ui.convert import STATS_CLASS
from studio.ui.i18n import tr
from studio.ui.math_text import DOLLAR

GENERATING_CLASS = "chat-generating"

# Runs once when the page loads. While the generating line shows, Stop carries the class chat-running
# (emphasised by assets/theme.css; watching the notice alone stays cheap while tokens stream), and Escape
# presses Stop (only then, and only while the chat tab shows). The Chatbot's copy buttons copy a message's
# value as sent, stats line and price spans included (see convert.stats_line and math_text): what reaches
# the clipboard is the text alone.
CHAT_JS = """() => {
  const mark = () => {
    const stop = document.querySelector('#stop-btn');
    if (stop) stop.classList.toggle('chat-running', !!document.querySelector('#chat-notice .%(generating)s'));
  };
  const watch = () => {
    const notice = document.querySelector('#chat-notice');
    if (!notice) return setTimeout(watch, 300);
    new MutationObserver(mark).observe(notice, {childList: true, subtree: true, characterData: true});
    mark();
  };
  watch();
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || e.defaultPrevented) return;
    const running = document.querySelector('#chat-notice .%(generating)s');
    const stop = document.querySelector('#stop-btn');
    if (!running || !stop || stop.offsetParent === null) return;
    e.preventDefault();
    stop.click();
  });
  const clip = navigator.clipboard;
  if (!clip || !clip.writeText) return;
  const write = clip.writeText.bind(clip);
  clip.writeText = (text) => write(String(text).replace(/\\n\\n<span class="%(stats)s">[^<]*<\\/span>/g, '')
    .split('%(dollar)s').join('$'));
}""" % {"generating": GENERATING_CLASS, "stats": STATS_CLASS, "dollar": DOLLAR}


@dataclass
class Generating:
    """The notice line while a reply runs: what it is doing, the pieces of text streamed so far (one per
    token for the local engines), the seconds since Send, and that Esc stops it. Its class marks the page as
    generating: CHAT_JS then emphasises Stop and lets Escape press it."""

    lang: str
    since: float
    pieces: int = 0

    def notice(self, notice: str, level: str) -> str:
        """The notice with the generating state: a loading notice takes its place, a warning stays beside it."""
        if notice and level == "info":
            text = notice
        elif self.pieces:
            text = tr(self.lang, "chat_generating", count=self.pieces, n=self.pieces,
                      s=f"{time.monotonic() - self.since:.1f}")
        else:
            text = tr(self.lang, "chat_generating_wait")  # no clock: nothing updates the line until text comes
        state = f'<span class="{GENERATING_CLASS}">{text}</span>'
        return f"{state}  \n{notice}" if notice and level == "warning" else state
