"""Who the web user is: the login's user, else the studio's local user (the terminal chat's too)."""

from __future__ import annotations

from typing import Optional

from studio.services import Services
from studio.tasks.users import adopt_browser_data, local_user, login_user


def web_user(services: Services, token: str, request: Optional[object]) -> str:
    """The user of a page load; without a login, what the browser kept under its old per-browser key
    (`token`, from localStorage) moves to the local user first, so nothing stored before is lost."""
    name = getattr(request, "username", None) if request else None
    if name:
        return login_user(name)
    uid = local_user()
    adopt_browser_data(services, token, uid)
    return uid
