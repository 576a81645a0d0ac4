"""UI strings of the chat area, in English and Chinese (merged by studio.ui.i18n)."""

EN: dict[str, str] = {}

ZH: dict[str, str] = {}
