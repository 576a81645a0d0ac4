"""UI strings of the looks area, in English and Chinese (merged by studio.ui.i18n): the header's status line,
the System tab's tables, task notices and the agent tab's notes."""

EN: dict[str, str] = {
    # The header line, one per model (the state dot is drawn by CSS).
    "status_ready": "**{label}** · {engine} · {device} · {dtype} · {ctx:,} ctx",
    "status_loading": "**{label}** · loading {bar} {progress:.0%} · {detail}",
    "status_failed": "**{label}** · failed to load: {error}",
    "status_idle": "**{label}** · not loaded",
    # System tab: the devices table and the models table.
    "sys_devices_head": "| device | total | this studio | other processes | free |",
    "sys_models_head": "| name | state | model | engine | family | dtype | device | memory | memory plan |",
    "sys_state_ready": "ready",
    "sys_state_loading": "loading {progress:.0%}",
    "sys_state_failed": "failed",
    "sys_state_idle": "not loaded",
    "sys_plan": "needs ≈{need} GiB (weights {weights} + KV cache {kv} + headroom {headroom}{split}); "
                "{free} GiB free on {device}",
    "sys_plan_split": ", ≈{each} GiB on each of {gpus} GPUs",
    "sys_path_placeholder": "/path/to/model",
    # Notices that tasks emit (studio.core.types.Notice.key); `text` stays the English the API and CLI show.
    "notice_waiting_model": "Waiting for the model to load ({progress:.0%}, {detail})…",
    "notice_trimmed": "{dropped} earliest message(s) left out so the conversation fits the model's "
                      "{window:,}-token context window.",
    "notice_trimmed_images": "{dropped} earliest message(s) ({images} image(s)) left out so the conversation "
                             "fits the model's {window:,}-token context window.",
    "notice_article_stopped": "Stopped. What was written so far is kept in the draft.",
    "notice_edit_stopped": "Stopped; the paragraph is unchanged.",
    # The agent tab's notes above the transcript and under the tools.
    "agent_no_native_tools": "**{model} cannot call tools natively** — the agent falls back to the ReAct text "
                             "protocol, which small models rarely follow. For the lesson's agent, start "
                             "InternLM2-Chat:",
    "agent_sandbox_refused": "**Python interpreter refused on this machine**: {reason}",
    "agent_sandbox_active": "**Sandbox protections active**: {names}",
    "agent_sandbox_missing": "Not available here: {names}",
    "sandbox_separate process": "separate process",
    "sandbox_rlimits": "resource limits",
    "sandbox_no network (namespace)": "no network (namespace)",
    "sandbox_no capabilities": "no capabilities",
    "sandbox_filesystem (landlock)": "filesystem (landlock)",
    "sandbox_seccomp": "seccomp",
    "sandbox_no TCP (landlock)": "no TCP (landlock)",
    "sandbox_no signals outside (landlock)": "no signals outside (landlock)",
    "sandbox_no network (seccomp)": "no network (seccomp)",
    "sandbox_no programs (seccomp)": "no programs (seccomp)",
}

ZH: dict[str, str] = {
    "status_ready": "**{label}** · {engine} · {device} · {dtype} · {ctx:,} ctx",
    "status_loading": "**{label}** · 加载中 {bar} {progress:.0%}",
    "status_failed": "**{label}** · 加载失败：{error}",
    "status_idle": "**{label}** · 未加载",
    "sys_devices_head": "| 设备 | 总量 | 本程序占用 | 其他进程占用 | 可用 |",
    "sys_models_head": "| 名称 | 状态 | 模型 | 引擎 | 模型系列 | 精度 | 设备 | 占用内存 | 内存规划 |",
    "sys_state_ready": "就绪",
    "sys_state_loading": "加载中 {progress:.0%}",
    "sys_state_failed": "加载失败",
    "sys_state_idle": "未加载",
    "sys_plan": "需要约 {need} GiB（权重 {weights} + KV 缓存 {kv} + 余量 {headroom}{split}）；"
                "{device} 上可用 {free} GiB",
    "sys_plan_split": "，{gpus} 块 GPU 每块约 {each} GiB",
    "sys_path_placeholder": "模型文件夹（或 .gguf 文件）的路径",
    "notice_waiting_model": "正在等待模型加载（{progress:.0%}）…",
    "notice_trimmed": "为了放进模型 {window:,} token 的上下文窗口，最早的 {dropped} 条消息没有发给模型。",
    "notice_trimmed_images": "为了放进模型 {window:,} token 的上下文窗口，最早的 {dropped} 条消息（含 {images} 张图片）"
                             "没有发给模型。",
    "notice_article_stopped": "已停止。已写好的内容保存在草稿中。",
    "notice_edit_stopped": "已停止，段落没有改动。",
    "agent_no_native_tools": "**{model} 不支持原生工具调用** — 智能体将改用 ReAct 文本协议，小模型往往无法遵循。"
                             "要运行课程中的智能体，请启动 InternLM2-Chat：",
    "agent_sandbox_refused": "**此机器无法启动 Python 解释器**：{reason}",
    "agent_sandbox_active": "**已启用的沙箱保护**：{names}",
    "agent_sandbox_missing": "此机器不支持：{names}",
    "sandbox_separate process": "独立进程",
    "sandbox_rlimits": "资源限制",
    "sandbox_no network (namespace)": "禁止联网（命名空间）",
    "sandbox_no capabilities": "去除特权",
    "sandbox_filesystem (landlock)": "文件系统限制（Landlock）",
    "sandbox_seccomp": "系统调用过滤（seccomp）",
    "sandbox_no TCP (landlock)": "禁止 TCP 连接（Landlock）",
    "sandbox_no signals outside (landlock)": "禁止向外部进程发信号（Landlock）",
    "sandbox_no network (seccomp)": "禁止联网（seccomp）",
    "sandbox_no programs (seccomp)": "禁止运行其他程序（seccomp）",
}
