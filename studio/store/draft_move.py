"""Giving a user's article drafts to another user, rows and image folders, so that stopping at any point
loses nothing and running it again finishes the move: copy the files, then move the row (its image paths
rewritten, in one transaction), then remove the old folder."""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

from studio.store.draft_files import DraftFiles
from studio.store.drafts import DraftStore

log = logging.getLogger(__name__)


def move_drafts(drafts: DraftStore, files: DraftFiles, old_user: str, new_user: str) -> int:
    """Move every draft of `old_user` to `new_user`; how many moved. A draft whose id `new_user` already
    has stays where it is (nothing is overwritten); StudioError when the store or a folder cannot be written."""
    if old_user == new_user:
        return 0
    moved = 0
    for draft_id in drafts.ids(old_user):
        if drafts.exists(new_user, draft_id):
            log.warning("Not moving article draft %s: %s already has a draft with that id", draft_id, new_user)
            continue
        old, new = files.copy_draft(old_user, new_user, draft_id)
        try:
            done = drafts.transfer(old_user, new_user, draft_id, partial(_rewrite, old=str(old), new=str(new)))
        except ValueError as exc:  # a damaged row: left where it is, with its pictures
            log.warning("Not moving article draft %s: its stored JSON cannot be read (%s)", draft_id, exc)
            continue
        if done:
            moved += 1
            files.remove(old_user, draft_id)
    _finish(drafts, files, old_user, new_user)
    return moved


def _finish(drafts: DraftStore, files: DraftFiles, old_user: str, new_user: str) -> None:
    """Remove old folders whose draft has already moved (a move stopped before its last step)."""
    for draft_id in files.draft_ids(old_user):
        if not drafts.exists(old_user, draft_id) and drafts.exists(new_user, draft_id):
            files.remove(old_user, draft_id)


def _rewrite(value: Any, old: str, new: str) -> Any:
    """`value` (a draft's JSON) with every path inside the folder `old` pointing into `new` instead."""
    if isinstance(value, dict):
        return {k: _rewrite(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, old, new) for v in value]
    if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
        return new + value[len(old):]
    return value
