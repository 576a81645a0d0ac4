"""UI strings of the sidebar area (search, date groups, the lists, prompt presets), in English and Chinese
(merged by studio.ui.i18n)."""

EN: dict[str, str] = {
    "search_placeholder": "Search conversations",
    "no_matches": "No conversation matches. Try other words, or clear the search.",
    "no_drafts": "No drafts yet",
    "group_today": "Today",
    "group_yesterday": "Yesterday",
    "group_week": "Previous 7 days",
    "group_month": "Previous 30 days",
    "group_older": "Older",
    "draft_blocks": "{n} paragraphs",
    "draft_blocks_one": "{n} paragraph",
    "draft_images": "{n} images",
    "draft_images_one": "{n} image",
    "draft_status_writing": "unfinished",
    "draft_status_stopped": "stopped",
    "draft_status_failed": "failed",
    "preset_pick": "Prompt presets",
    "preset_name": "Save the prompt as",
    "preset_name_placeholder": "Preset name, e.g. Polite tutor",
    "preset_save": "Save preset",
    "preset_delete": "Delete preset",
    "preset_saved": "Saved the preset “{name}”.",
    "preset_none_picked": "No preset is picked.",
    "preset_none_picked_hint": "Pick one of your presets in the list first.",
    "preset_builtin_kept": "Built-in presets cannot be deleted.",
    "preset_builtin_kept_hint": "Only presets you saved can be deleted.",
    "preset_default": "The model's default",
    "preset_concise": "Concise",
    "preset_concise_text": "You are a helpful assistant. Answer briefly and directly, in a few sentences at most, "
                           "without filler. Use a list only when it makes the answer clearer.",
    "preset_translator": "Translator 中英互译",
    "preset_translator_text": "You are a translator between Chinese and English. When the user writes Chinese, "
                              "translate it into natural English; when the user writes English, translate it "
                              "into natural Chinese. Reply with the translation only.",
    "preset_reviewer": "Code reviewer",
    "preset_reviewer_text": "You are an experienced code reviewer. Point out bugs, unclear names, missing error "
                            "handling and missing tests, most important first, and suggest concrete fixes with "
                            "short code examples.",
    "preset_teacher": "Patient teacher",
    "preset_teacher_text": "You are a patient teacher. Explain step by step, starting from a simple example, and "
                           "end with one short question that checks the learner has understood.",
}

ZH: dict[str, str] = {
    "search_placeholder": "搜索对话",
    "no_matches": "没有匹配的对话。换个关键词试试，或清空搜索框。",
    "no_drafts": "还没有草稿",
    "group_today": "今天",
    "group_yesterday": "昨天",
    "group_week": "过去 7 天",
    "group_month": "过去 30 天",
    "group_older": "更早",
    "draft_blocks": "{n} 段",
    "draft_blocks_one": "{n} 段",
    "draft_images": "{n} 张图",
    "draft_images_one": "{n} 张图",
    "draft_status_writing": "未完成",
    "draft_status_stopped": "已停止",
    "draft_status_failed": "失败",
    "preset_pick": "提示词预设",
    "preset_name": "将提示词保存为",
    "preset_name_placeholder": "预设名称，例如：耐心的家教",
    "preset_save": "保存预设",
    "preset_delete": "删除预设",
    "preset_saved": "已保存预设“{name}”。",
    "preset_none_picked": "没有选中预设。",
    "preset_none_picked_hint": "请先在列表中选中一个你保存的预设。",
    "preset_builtin_kept": "内置预设不能删除。",
    "preset_builtin_kept_hint": "只能删除你自己保存的预设。",
    "preset_default": "模型默认",
    "preset_concise": "简洁回答",
    "preset_concise_text": "你是一个乐于助人的助手。回答要简洁直接，最多几句话，不说套话；只有在能让回答更清楚时才使用列表。",
    "preset_translator": "中英互译",
    "preset_translator_text": "你是一名中英互译助手。用户输入中文时，把它翻译成自然流畅的英文；用户输入英文时，"
                              "把它翻译成自然流畅的中文。只输出译文。",
    "preset_reviewer": "代码审查",
    "preset_reviewer_text": "你是一名经验丰富的代码审查者。按重要程度依次指出缺陷、不清晰的命名、缺失的错误处理和测试，"
                            "并给出具体的修改建议和简短的代码示例。",
    "preset_teacher": "耐心的老师",
    "preset_teacher_text": "你是一位耐心的老师。从一个简单的例子开始，一步一步地讲解，最后用一个小问题确认对方已经理解。",
}
