"""UI strings in English and Chinese, served through gr.I18n (the browser's language picks)."""

from __future__ import annotations

import gradio as gr

EN = {
    "tab_chat": "Chat",
    "new_chat": "＋ New conversation",
    "conversations": "Conversations",
    "no_conversations": "No conversations yet",
    "rename": "Rename",
    "rename_placeholder": "New title, then Enter",
    "delete": "Delete",
    "input_placeholder": "Message… (Enter sends, Shift+Enter adds a line)",
    "stop": "⏹ Stop",
    "regenerate": "↻ Regenerate",
    "undo": "↶ Undo / edit last",
    "clear": "🗑 Clear",
    "system_prompt": "System prompt",
    "parameters": "Parameters",
    "max_new_tokens": "Max new tokens",
    "temperature": "Temperature",
    "top_p": "Top-p",
    "top_k": "Top-k (0 = off)",
    "repetition_penalty": "Repetition penalty",
    "do_sample": "Sample (off = greedy)",
    "seed": "Seed (-1 = random)",
    "export": "Export",
    "export_md": "Markdown",
    "export_json": "JSON",
    "examples": "Try",
    "theme": "◐ Dark / light",
    "language": "中文 / EN",
    "settings": "Settings",
    "model": "Model",
    "chat_placeholder": "**Puyu Studio** — ask anything. Your conversations are saved on this machine.",
}

ZH = {
    "tab_chat": "对话",
    "new_chat": "＋ 新对话",
    "conversations": "对话记录",
    "no_conversations": "还没有对话",
    "rename": "重命名",
    "rename_placeholder": "输入新标题后回车",
    "delete": "删除",
    "input_placeholder": "输入消息…（回车发送，Shift+回车换行）",
    "stop": "⏹ 停止",
    "regenerate": "↻ 重新生成",
    "undo": "↶ 撤销 / 编辑上一条",
    "clear": "🗑 清空",
    "system_prompt": "系统提示词",
    "parameters": "生成参数",
    "max_new_tokens": "最大生成长度",
    "temperature": "温度",
    "top_p": "Top-p",
    "top_k": "Top-k（0 为关闭）",
    "repetition_penalty": "重复惩罚",
    "do_sample": "采样（关闭即贪心解码）",
    "seed": "随机种子（-1 为随机）",
    "export": "导出",
    "export_md": "Markdown",
    "export_json": "JSON",
    "examples": "试试",
    "theme": "◐ 深色 / 浅色",
    "language": "中文 / EN",
    "settings": "设置",
    "model": "模型",
    "chat_placeholder": "**浦语 Studio** — 想问什么都可以。对话保存在本机。",
}

EXAMPLES = [
    "请写一个 300 字的小故事",
    "Explain what a large language model is in three sentences.",
    "用 Python 写一个快速排序，并解释它的时间复杂度。",
    "Give me five name ideas for a cat who loves books.",
]


def build_i18n() -> gr.I18n:
    """The gr.I18n object passed to launch()."""
    return gr.I18n(en=EN, zh=ZH, **{"zh-CN": ZH})
