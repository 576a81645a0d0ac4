"""Lines typed at the terminal chat's prompt: readline editing and history (kept in a 0600 file) on a
terminal; plain lines, still remembered, from a pipe."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional, TextIO

HISTORY_LINES = 1000

log = logging.getLogger(__name__)


def _readline():
    """The readline module, or None where Python has none (Windows without pyreadline)."""
    try:
        import readline
    except ImportError:
        return None
    return readline


class LineReader:
    """Reads one line per call; None at the end of the input."""

    def __init__(self, history: Path, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
        self.history, self.stdin, self.stdout = Path(history), stdin, stdout
        # input() edits lines only on the process's own terminal; a stream given in (tests, pipes) is read.
        self.interactive = stdin is sys.stdin and stdout is sys.stdout and stdin.isatty() and stdout.isatty()
        self.readline = _readline()
        if self.readline is not None:
            self.readline.set_history_length(HISTORY_LINES)
            self.readline.clear_history()  # readline's list is the process's: start from this file alone
            self._load()

    def read(self, prompt: str) -> Optional[str]:
        """The next line without its line ending (inner and leading spaces kept); KeyboardInterrupt on Ctrl-C."""
        if self.interactive:
            try:
                text = input(prompt)  # readline adds it to the history itself
            except EOFError:
                return None
        else:
            self.stdout.write(prompt)
            self.stdout.flush()
            line = self.stdin.readline()
            if not line:
                return None
            text = line.rstrip("\r\n")
            if self.readline is not None and text.strip():
                self.readline.add_history(text)
        self._save()
        return text

    def _load(self) -> None:
        try:
            if self.history.is_file():
                self.readline.read_history_file(str(self.history))
        except OSError as exc:  # unreadable history is no reason not to chat
            log.warning("Could not read the chat history %s: %s", self.history, exc)

    def _save(self) -> None:
        """Write the history after every line: a killed terminal keeps what was typed."""
        if self.readline is None:
            return
        try:
            # Created private first: write_history_file would make it with the umask's mode.
            os.close(os.open(self.history, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(self.history, 0o600)
            self.readline.write_history_file(str(self.history))
        except OSError as exc:
            log.warning("Could not save the chat history %s: %s", self.history, exc)
