"""UI strings in English and Chinese, served through gr.I18n (the browser's language picks); `tr` for text
the server renders itself in the page's language."""

from __future__ import annotations

from typing import Optional

import gradio as gr

from studio.ui.strings import chat, errors, homework, looks, models, notices, sidebar, tabs, versions

AREAS = (chat, sidebar, tabs, looks, homework, versions, errors, notices, models)  # each adds its own keys; none may repeat another's
LANG_COOKIE = "puyu-lang"  # set by the page's early script (studio/ui/early_script.py)

EN = {
    "tab_chat": "Chat",
    "tab_article": "Article · 图文创作",
    "article_title": "Title or instruction",
    "article_title_hint": "e.g. A weekend trip to the mountains",
    "article_placeholder": "Your illustrated article appears here as it is written.",
    "article_material": "Material and your own images (optional)",
    "article_uploads": "Your images (placed in the article, each once)",
    "article_settings": "Settings",
    "beams": "Beams (1 = stream the text)",
    "model_selects": "Vision model picks the images",
    "image_count": "Images (auto = the model decides)",
    "write": "Write",
    "drafts": "Article drafts",
    "new_article": "New article",
    "article_edit": "Edit",
    "paragraph": "Paragraph",
    "edit_guide": "Guidance for the model (optional)",
    "rewrite": "Rewrite",
    "expand": "Expand",
    "shorten": "Shorten",
    "insert_before": "Insert before",
    "insert_after": "Insert after",
    "paragraph_text": "Paragraph text (edit by hand)",
    "save_text": "Save text",
    "delete_paragraph": "Delete paragraph",
    "undo_edit": "Undo last edit",
    "image_caption": "Image caption (edit, then search again)",
    "search_image": "Search again / add image",
    "delete_image": "Remove image",
    "candidates": "Candidates (click one, then Use)",
    "candidate_no": "Candidate #",
    "use_candidate": "Use this candidate",
    "export_markdown": "Markdown (zip)",
    "export_html": "HTML",
    "export_xlsx": "Excel (xlsx)",
    "tab_vision": "Image understanding",
    "tab_system": "System",
    "switch_path": "Switch to the model at",
    "unload": "Unload",
    "load": "Load",
    "switch": "Switch model",
    "vision_input": "Ask about the images… (drag, paste or upload; Enter sends)",
    "vision_placeholder": "**Image understanding** — add one or more images and ask. Describe, read text (OCR), or extract key information as JSON.",
    "describe": "Describe",
    "ocr": "Read text (OCR)",
    "max_tiles": "Max tiles per image (more = finer detail, more tokens)",
    "extract_json": "Extract key information as JSON",
    "json_schema": "JSON schema (editable)",
    "json_instructions": "Extra instructions (optional)",
    "json_retries": "Re-asks when the answer does not match",
    "extract": "Extract",
    "json_result": "Result",
    "new_chat": "New conversation",
    "conversations": "Conversations",
    "no_conversations": "No conversations yet",
    "rename": "Rename",
    "rename_placeholder": "New title, then Enter",
    "delete": "Delete",
    "input_placeholder": "Message… (Enter sends, Shift+Enter adds a line)",
    "stop": "Stop",
    "regenerate": "Regenerate",
    "undo": "Undo / edit last",
    "clear": "Clear",
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
    "chat_export_markdown": "Markdown",
    "chat_export_json": "JSON",
    "system_prompt_pending": "The model's default — shown once the model has loaded",
    "system_prompt_none": "No system prompt",
    "system_prompt_model": "The model's own default (it does not say what it is)",
    "examples": "Try",
    "theme": "Dark / light",
    "language": "中文 / EN",
    "settings": "Settings",
    "model": "Model",
    "chat_placeholder": "**Puyu Studio** — ask anything. Your conversations are saved on this machine.",
    "tab_agent": "Agent · 智能体",
    "agent_placeholder": "**Agent** — the model can run Python and call tools. Each step shows its call and result; click one to expand it.",
    "agent_input": "Ask the agent… (Enter sends)",
    "agent_clear": "Clear (stops the interpreter)",
    "agent_new": "New agent conversation",
    "agent_tools": "Tools",
    "agent_interpreter": "数据分析 · Data analysis (Python interpreter)",
    "agent_max_steps": "Max steps",
    "agent_prompts": "Prompts",
    "agent_system_prompt": "System prompt (empty: the model's own, e.g. InternLM2's meta instruction)",
    "agent_plugin_prompt": "Plugin prompt ({prompt} is where the tool list goes; empty: the official list alone)",
    "agent_interpreter_prompt": "Interpreter prompt (empty: InternLM2's official one)",
    "agent_plugins": "Plugins",
    "agent_files": "Files for the interpreter (CSV, images…)",
}

ZH = {
    "tab_chat": "对话",
    "tab_article": "图文创作",
    "article_title": "标题或写作要求",
    "article_title_hint": "例如：周末去山里徒步",
    "article_placeholder": "文章会在这里边写边显示。",
    "article_material": "素材与自己的图片（可选）",
    "article_uploads": "你的图片（每张在文中使用一次）",
    "article_settings": "生成设置",
    "beams": "Beam 数（1 为流式输出）",
    "model_selects": "由视觉模型挑选配图",
    "image_count": "配图数量（auto 为模型决定）",
    "write": "开始创作",
    "drafts": "文章草稿",
    "new_article": "新文章",
    "article_edit": "编辑",
    "paragraph": "段落",
    "edit_guide": "给模型的编辑要求（可选）",
    "rewrite": "改写",
    "expand": "扩写",
    "shorten": "缩写",
    "insert_before": "在前面插入一段",
    "insert_after": "在后面插入一段",
    "paragraph_text": "段落文字（可手动修改）",
    "save_text": "保存文字",
    "delete_paragraph": "删除段落",
    "undo_edit": "撤销上一步编辑",
    "image_caption": "图片标题（修改后重新搜索）",
    "search_image": "重新搜索 / 添加图片",
    "delete_image": "删除图片",
    "candidates": "候选图片（点击一张后使用）",
    "candidate_no": "候选编号",
    "use_candidate": "使用这张候选图",
    "export_markdown": "Markdown（zip）",
    "export_html": "HTML",
    "export_xlsx": "Excel（xlsx）",
    "tab_vision": "图像理解",
    "tab_system": "系统",
    "switch_path": "切换到此路径的模型",
    "unload": "卸载",
    "load": "加载",
    "switch": "切换模型",
    "vision_input": "就图片提问…（拖入、粘贴或上传；回车发送）",
    "vision_placeholder": "**图像理解** — 添加一张或多张图片再提问。可描述图片、识别文字（OCR），或按 JSON 提取关键信息。",
    "describe": "描述图片",
    "ocr": "识别文字（OCR）",
    "max_tiles": "每张图片的最大切片数（越多越精细，占用 token 越多）",
    "extract_json": "按 JSON 提取关键信息",
    "json_schema": "JSON Schema（可编辑）",
    "json_instructions": "补充说明（可选）",
    "json_retries": "答案不符合时重新询问的次数",
    "extract": "提取",
    "json_result": "结果",
    "new_chat": "新对话",
    "conversations": "对话记录",
    "no_conversations": "还没有对话",
    "rename": "重命名",
    "rename_placeholder": "输入新标题后回车",
    "delete": "删除",
    "input_placeholder": "输入消息…（回车发送，Shift+回车换行）",
    "stop": "停止",
    "regenerate": "重新生成",
    "undo": "撤销 / 编辑上一条",
    "clear": "清空",
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
    "chat_export_markdown": "Markdown",
    "chat_export_json": "JSON",
    "system_prompt_pending": "模型的默认系统提示词 — 模型加载完成后显示",
    "system_prompt_none": "不使用系统提示词",
    "system_prompt_model": "使用模型自带的默认系统提示词（模型未公开其内容）",
    "examples": "试试",
    "theme": "深色 / 浅色",
    "language": "中文 / EN",
    "settings": "设置",
    "model": "模型",
    "chat_placeholder": "**浦语 Studio** — 想问什么都可以。对话保存在本机。",
    "tab_agent": "智能体",
    "agent_placeholder": "**智能体** — 模型可以运行 Python、调用工具。每一步显示调用与结果，点击展开。",
    "agent_input": "向智能体提问…（回车发送）",
    "agent_clear": "清空（停止解释器）",
    "agent_new": "新的智能体对话",
    "agent_tools": "工具",
    "agent_interpreter": "数据分析（Python 解释器）",
    "agent_max_steps": "最大步数",
    "agent_prompts": "提示词",
    "agent_system_prompt": "系统提示词（留空：使用模型自带的，如 InternLM2 的官方系统提示）",
    "agent_plugin_prompt": "插件提示词（{prompt} 处放工具列表；留空：只用官方的工具列表）",
    "agent_interpreter_prompt": "数据分析提示词（留空：InternLM2 官方的提示词）",
    "agent_plugins": "插件",
    "agent_files": "给解释器的文件（CSV、图片…）",
}

# The chat's example chips: the page shows the list of its language (theme.css hides the other by html[lang]).
EXAMPLES = {
    "en": [
        "Write a 300-word short story.",
        "Explain what a large language model is in three sentences.",
        "Write a quicksort in Python and explain its time complexity.",
        "Give me five name ideas for a cat who loves books.",
    ],
    "zh": [
        "请写一个 300 字的小故事",
        "用三句话解释什么是大语言模型。",
        "用 Python 写一个快速排序，并解释它的时间复杂度。",
        "给一只爱看书的猫起五个名字。",
    ],
}

# The lesson's agent demo: an equation solved with Python, an ArXiv search, a CSV analysis (upload one first).
AGENT_EXAMPLES = {
    "en": [
        "Given 2x+3=10, find x.",
        "Search for the InternLM2 Technical Report",
        "Analyse the CSV file I uploaded: list the mean of each column and plot a histogram of the first column.",
    ],
    "zh": [
        "已知 2x+3=10，求x",
        "帮我搜索 InternLM2 Technical Report",
        "分析我上传的 CSV 文件：列出各列的均值，并画出第一列的直方图。",
    ],
}

# The command that starts the lesson's tool-calling model (shown under the agent's "no native tools" note).
INTERNLM2_COMMAND = ("python launch.py --config configs/internlm2-chat-1_8b.yaml "
                     "--model-path /path/to/internlm2-chat-1_8b")


def strings(lang: str) -> dict[str, str]:
    """Every UI string of `lang` ("en" or "zh"): the base table and each area's."""
    merged = dict(ZH if lang == "zh" else EN)
    for area in AREAS:
        merged.update(area.ZH if lang == "zh" else area.EN)
    return merged


def build_i18n() -> gr.I18n:
    """The gr.I18n object passed to launch()."""
    zh = strings("zh")
    return gr.I18n(en=strings("en"), zh=zh, **{"zh-CN": zh})


def page_lang(request: Optional[gr.Request]) -> str:
    """The language the page shows ("zh" or "en"): its cookie, else the browser's Accept-Language."""
    if request is None:
        return "en"
    cookies = getattr(request, "cookies", None) or {}
    lang = cookies.get(LANG_COOKIE, "")
    if lang in ("en", "zh"):
        return lang
    headers = getattr(request, "headers", None) or {}
    return "zh" if str(headers.get("accept-language", "")).lower().startswith("zh") else "en"


def tr(lang: str, key: str, count: Optional[int] = None, **fmt) -> str:
    """The string `key` in `lang`, formatted with `fmt` (for text the server renders itself); with
    `count` == 1 its `KEY_one` form where the table has one ("1 token", not "1 tokens")."""
    table = strings(lang)
    if count is not None and str(count) == "1" and f"{key}_one" in table:
        key = f"{key}_one"
    text = table.get(key) or strings("en")[key]
    return text.format(**fmt) if fmt else text


def in_both(render, block: bool = True) -> str:
    """`render(lang)` for each language as HTML the page's CSS shows one of (html[lang]): for server-rendered
    text made before any page's language is known, or kept across requests (a first value, a cached note)."""
    if block:  # blank lines keep the Markdown inside the <div> rendered
        return f'<div class="lang-en">\n\n{render("en")}\n\n</div><div class="lang-zh">\n\n{render("zh")}\n\n</div>'
    return f'<span class="lang-en">{render("en")}</span><span class="lang-zh">{render("zh")}</span>'


def both(key: str, block: bool = False, **fmt) -> str:
    """UI string `key` in both languages (see in_both)."""
    return in_both(lambda lang: tr(lang, key, **fmt), block)


def notice_text(lang: str, notice) -> str:
    """A task's Notice in `lang`: its UI string when it names one, else its English text."""
    key = getattr(notice, "key", "")
    if key and key in strings(lang):
        return tr(lang, key, **notice.args)
    return notice.text

