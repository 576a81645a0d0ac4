"""UI strings of message versions (edit a message, regenerate, ‹ n/m ›), in English and Chinese."""

EN: dict[str, str] = {
    "versions_prev": "‹",
    "versions_next": "›",
    "versions_label": "Message {n} · version **{k}** of {m}",
    "versions_label_next": "Your next message · version **{k}** of {m}",
    "versions_hint": "  \n*Click a message marked ‹ n/m › to switch its versions here.*",
    "versions_busy": "A reply is still being written. Stop it first, then edit or switch versions.",
}

ZH: dict[str, str] = {
    "versions_prev": "‹",
    "versions_next": "›",
    "versions_label": "第 {n} 条消息 · 版本 **{k}** / {m}",
    "versions_label_next": "下一条消息 · 版本 **{k}** / {m}",
    "versions_hint": "  \n*点击带有 ‹ n/m › 标记的消息，可在这里切换它的各个版本。*",
    "versions_busy": "回复仍在生成中。请先停止，再编辑消息或切换版本。",
}
