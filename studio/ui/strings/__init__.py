"""UI strings by area; each module holds EN and ZH dicts with the same keys (studio.ui.i18n merges them)."""
