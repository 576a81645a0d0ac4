"""UI strings of the chat area, in English and Chinese (merged by studio.ui.i18n)."""

EN: dict[str, str] = {
    "stats_tokens": "{n} tokens",
    "stats_tokens_one": "{n} token",
    "stats_first_token": "{s} s to first token",
    "stats_speed": "{v} tok/s",
    "stats_stopped": "stopped",
    "stats_length": "reached the length limit",
    "chat_generating": "Generating… {n} tokens · {s} s · Esc stops",
    "chat_generating_one": "Generating… {n} token · {s} s · Esc stops",
    "chat_generating_wait": "Generating… reading the prompt · Esc stops",
}

ZH: dict[str, str] = {
    "stats_tokens": "{n} 个 token",
    "stats_tokens_one": "{n} 个 token",
    "stats_first_token": "首 token {s} s",
    "stats_speed": "{v} token/s",
    "stats_stopped": "已停止",
    "stats_length": "达到长度上限",
    "chat_generating": "生成中… 已生成 {n} 个 token · {s} s · 按 Esc 停止",
    "chat_generating_one": "生成中… 已生成 {n} 个 token · {s} s · 按 Esc 停止",
    "chat_generating_wait": "生成中… 正在读取提示 · 按 Esc 停止",
}
