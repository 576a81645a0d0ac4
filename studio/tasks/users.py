"""Who owns a conversation: the local user (no login) or a login's user, the same for web and terminal."""

from __future__ import annotations

import getpass
import logging
import os
import re

from studio.errors import InputError, StudioError
from studio.services import Services
from studio.store.draft_move import move_drafts

# What the page kept in localStorage before there was a local user: one random key per browser.
BROWSER_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
_NAME_JUNK = re.compile(r"[\x00-\x1f\x7f]")

log = logging.getLogger(__name__)


def local_user() -> str:
    """The one user of a studio without a login: the operating-system account it runs as."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no USER/LOGNAME and no passwd entry (some containers)
        name = f"uid{os.getuid()}"
    return f"local:{name}"


def login_user(name: str) -> str:
    """The user of a login name (the web's --auth user; the terminal's --user)."""
    clean = (name or "").strip()
    if not clean or _NAME_JUNK.search(clean):
        raise InputError(f"{name!r} is not a user name.", "Give the login name, e.g. --user alice.")
    return f"user:{clean}"


def adopt_browser_data(services: Services, token: str, user_id: str) -> int:
    """Move what a browser stored under its old per-browser key (conversations, agent conversations,
    prompt presets, article drafts with their pictures) to `user_id`; how many items moved."""
    if not BROWSER_TOKEN_RE.match(token or "") or token == user_id:
        return 0
    moved = 0
    for store in (s for s in (services.store, services.agent_store, services.presets) if s is not None):
        try:
            moved += store.reassign(token, user_id)
        except StudioError as exc:  # a read-only store: the page still opens; the rows stay where they are
            log.warning("Could not move a browser's %s rows to %s: %s", store.STORE, user_id, exc)
    if services.drafts is not None and services.draft_files is not None:
        try:
            moved += move_drafts(services.drafts, services.draft_files, token, user_id)
        except StudioError as exc:  # what did not move stays under the old key; the next page load retries
            log.warning("Could not move a browser's article drafts to %s: %s", user_id, exc)
    if moved:
        log.info("Moved %d item(s) kept by a browser to %s", moved, user_id)
    return moved
