"""Model families: prompt formats and loading quirks, one file each."""

from __future__ import annotations

from studio.registry import Registry

FAMILIES: Registry = Registry("family")


@FAMILIES.register("hf_chat_template")
def _hf_chat_template():
    from studio.families.hf_chat_template import HFChatTemplateFamily

    return HFChatTemplateFamily()


@FAMILIES.register("internlm2")
def _internlm2():
    from studio.families.internlm2 import InternLM2Family

    return InternLM2Family()


@FAMILIES.register("internlm")
def _internlm():
    from studio.families.internlm1 import InternLM1Family

    return InternLM1Family()


@FAMILIES.register("internlm3")
def _internlm3():
    from studio.families.internlm3 import InternLM3Family

    return InternLM3Family()


@FAMILIES.register("internvl2")
def _internvl2():
    from studio.families.internvl2 import InternVL2Family

    return InternVL2Family()


@FAMILIES.register("internvl2_5")
def _internvl2_5():
    from studio.families.internvl25 import InternVL25Family

    return InternVL25Family()


@FAMILIES.register("xcomposer")
def _xcomposer():
    from studio.families.xcomposer1 import XComposer1Family

    return XComposer1Family()


@FAMILIES.register("xcomposer2")
def _xcomposer2():
    from studio.families.xcomposer2 import XComposer2Family

    return XComposer2Family()


# Native tool-call formats, by family: prompts with tool turns, the stops that end a call, the markers kept.
TOOL_FORMATS: Registry = Registry("tool format")


@TOOL_FORMATS.register("internlm2")
def _internlm2_tools():
    from studio.families import internlm2_tools

    return internlm2_tools
