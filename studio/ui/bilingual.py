"""Text the server renders once for every page (cached notes, example chips) in both languages; the page's
CSS shows the one of its html[lang] (set by the early script)."""

from __future__ import annotations

import gradio as gr

from studio.ui.i18n import INTERNLM2_COMMAND, both, in_both, strings, tr


def examples(lists: dict[str, list[str]], textbox, label, prefix: str) -> None:
    """One gr.Examples per language (ids `<prefix>-en`, `<prefix>-zh`); theme.css hides the other language's."""
    for lang, items in lists.items():
        gr.Examples(items, inputs=[textbox], label=label, elem_id=f"{prefix}-{lang}")


def no_native_tools(model: str) -> str:
    """The agent tab's note for a model without native tool calls, with the command that starts InternLM2."""
    return both("agent_no_native_tools", block=True, model=model) + f"\n\n`{INTERNLM2_COMMAND}`"


def _names(lang: str, names) -> str:
    """Protection names in `lang` (a name without a string of its own stays as the sandbox gave it)."""
    table = strings(lang)
    return ("、" if lang == "zh" else ", ").join(table.get(f"sandbox_{n}", n) for n in names)


def sandbox_note(active: list[str], missing: dict[str, str]) -> str:
    """Which sandbox protections are active, and which this machine lacks (the reasons in English only:
    they are the system's own error messages)."""
    def line(lang: str) -> str:
        text = tr(lang, "agent_sandbox_active", names=_names(lang, active))
        if missing:
            gaps = (_names(lang, list(missing)) if lang == "zh"
                    else "; ".join(f"{k} ({v})" for k, v in missing.items()))
            text += "  \n" + tr(lang, "agent_sandbox_missing", names=gaps)
        return text

    return in_both(line)


def sandbox_refused(reason: str) -> str:
    """The note when the interpreter cannot start safely on this machine."""
    return both("agent_sandbox_refused", block=True, reason=reason)
