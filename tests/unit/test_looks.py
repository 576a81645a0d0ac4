"""Looks and language: icons that need no emoji font, the header line and System tables in both languages,
task notices shown in the page's language."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from studio.core.types import EngineInfo, Notice
from studio.engines.devices import DeviceStat
from studio.engines.memory import MemoryPlan
from studio.services import LoadState
from studio.ui import i18n
from studio.ui.bilingual import no_native_tools, sandbox_note
from studio.ui.convert import status_markdown
from studio.ui.icons import ICONS_DIR, icon
from studio.ui.system_tab import plan_text, state_text, stats_markdown

GIB = 1024**3
# Pictographs and symbols that need an emoji font (the status dots, ⏹ 🗑 🔍 🖼 ⚠️ …).
EMOJI = re.compile("[\U0001F000-\U0001FFFF\u2600-\u27BF\u23E9-\u23FA\u2B00-\u2BFF\uFE0F]")
CJK = re.compile("[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")
INFO = EngineInfo(engine="hf", model="SmolLM2-135M-Instruct", family="hf_chat_template", device="cpu",
                  dtype="bfloat16", context_window=8192)


def test_every_icon_is_an_svg_with_a_viewbox():
    names = sorted(p.stem for p in ICONS_DIR.glob("*.svg"))
    assert {"stop", "trash", "regenerate", "undo", "plus", "search", "image", "text", "theme"} <= set(names)
    for name in names:
        root = ET.parse(icon(name)).getroot()
        assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 24 24", name


def test_an_unknown_icon_names_the_known_ones():
    with pytest.raises(FileNotFoundError, match="known: .*stop"):
        icon("no-such-icon")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_ui_string_needs_an_emoji_font(lang):
    bad = {k: v for k, v in i18n.strings(lang).items() if EMOJI.search(v)}
    assert not bad


@pytest.mark.parametrize("state, dot", [
    (LoadState("ready", 1.0, info=INFO), "status-ready"), (LoadState("loading", 0.4, "Reading"), "status-loading"),
    (LoadState("failed", error="no weights"), "status-failed"), (LoadState(), "status-idle"),
])
def test_the_header_dot_is_drawn_by_css(state, dot):
    line = status_markdown("SmolLM2", state)
    assert line.startswith(f'<span class="status-dot {dot}"></span> ') and not EMOJI.search(line)


def test_the_header_line_in_chinese():
    assert "加载中 ▰▰▰▰▱▱▱▱▱▱ 40%" in status_markdown("SmolLM2", LoadState("loading", 0.4, "Reading the weights"), "zh")
    assert "Reading" not in status_markdown("SmolLM2", LoadState("loading", 0.4, "Reading the weights"), "zh")
    assert "Reading the weights" in status_markdown("SmolLM2", LoadState("loading", 0.4, "Reading the weights"))
    assert status_markdown("SmolLM2", LoadState(), "zh").endswith("**SmolLM2** · 未加载")
    assert "加载失败：no weights" in status_markdown("SmolLM2", LoadState("failed", error="no weights"), "zh")
    ready = status_markdown("SmolLM2", LoadState("ready", 1.0, info=INFO), "zh")
    assert ready.endswith("**SmolLM2** · hf · cpu · bfloat16 · 8,192 ctx")


def test_a_notice_is_shown_in_the_page_language_and_keeps_english_for_the_api():
    waiting = Notice("Waiting for the model to load (40%, Reading)…", key="notice_waiting_model",
                     args={"progress": 0.4, "detail": "Reading"})
    assert i18n.notice_text("zh", waiting) == "正在等待模型加载（40%）…"
    assert i18n.notice_text("en", waiting) == waiting.text
    trimmed = Notice("x", "warning", key="notice_trimmed", args={"dropped": 3, "images": 0, "window": 2048})
    assert i18n.notice_text("zh", trimmed) == "为了放进模型 2,048 token 的上下文窗口，最早的 3 条消息没有发给模型。"
    assert i18n.notice_text("zh", Notice("plain English")) == "plain English"  # no key: its text
    assert i18n.notice_text("zh", Notice("fallback", key="no_such_key")) == "fallback"


@pytest.mark.parametrize("gpus", [1, 2])
def test_the_memory_plan_reads_back_from_the_engines_wording(gpus):
    plan = MemoryPlan("cuda:0-1" if gpus > 1 else "cpu", 2 * GIB, GIB, GIB, 20 * GIB, gpus)
    zh = plan_text(plan.summary(), "zh")
    assert zh.startswith("需要约 4.0 GiB（权重 2.0 + KV 缓存 1.0 + 余量 1.0") and "可用 20.0 GiB" in zh
    assert ("2 块 GPU 每块约 2.0 GiB" in zh) == (gpus > 1)
    assert plan_text(plan.summary(), "en") == plan.summary()
    assert plan_text("lmdeploy, tp=1", "zh") == "lmdeploy, tp=1"  # another wording: shown as it is


def test_the_system_tables_in_chinese():
    table = stats_markdown([DeviceStat("cpu (RAM)", 16 * GIB, 8 * GIB, GIB)], "zh")
    assert table.splitlines()[0] == "| 设备 | 总量 | 本程序占用 | 其他进程占用 | 可用 |"
    assert table.splitlines()[1] == "|---|---|---|---|---|"
    assert state_text(LoadState("loading", 0.5), "zh").endswith("加载中 50%")
    assert state_text(LoadState("ready", 1.0, info=INFO), "en") == '<span class="status-dot status-ready"></span> ready'


def test_agent_notes_carry_both_languages_for_the_page_to_pick():
    note = no_native_tools("SmolLM2")
    assert '<div class="lang-en">' in note and "cannot call tools natively" in note
    assert '<div class="lang-zh">' in note and "不支持原生工具调用" in note and "configs/internlm2-chat-1_8b.yaml" in note
    sandbox = sandbox_note(["separate process", "rlimits"], {"seccomp": "not supported"})
    en, zh = sandbox.split('<div class="lang-zh">')
    assert "separate process, resource limits" in en and "seccomp (not supported)" in en
    assert "独立进程、资源限制" in zh and "not supported" not in zh


def test_examples_exist_in_each_language_alone():
    for lists in (i18n.EXAMPLES, i18n.AGENT_EXAMPLES):
        assert set(lists) == {"en", "zh"} and len(lists["en"]) == len(lists["zh"])
        assert not any(CJK.search(x) for x in lists["en"])
        assert all(CJK.search(x) for x in lists["zh"])

