"""Text the server renders into the page (agent steps, reopened drafts, the drafts picker) in its language."""

from __future__ import annotations

import re

from studio.core.article import ArticleDraft
from studio.core.session import ChatSession
from studio.core.types import Message
from studio.ui.agent_view import agent_messages
from studio.ui.article_view import draft_label, status_notice

LATIN_WORD = re.compile(r"\b[A-Za-z]{3,}\b")


def _steps() -> ChatSession:
    call = Message.of("assistant", "")
    call.tool_call = {"kind": "plugin", "name": "add", "arguments": {"a": 2}, "raw": "{}"}
    call.meta = {"status": "done", "seconds": 0.1}
    result = Message.of("tool", "")
    result.name, result.meta = "plugin", {"status": "done", "error": "", "images": ["/gone.png"], "tool": "add"}
    stopped = Message.of("assistant", "")
    stopped.tool_call = {"kind": "plugin", "name": "add", "arguments": {}, "raw": "{}"}
    stopped.meta = {"status": "cancelled"}
    return ChatSession(messages=[Message.of("user", "q"), call, result, stopped,
                                 Message.of("assistant", "half", partial=True)])


def test_agent_steps_are_worded_in_the_page_language():
    zh = agent_messages(_steps(), lang="zh")
    words = [LATIN_WORD.findall(re.sub(r"```.*?```", "", m["content"], flags=re.S)) for m in zh[1:]]
    assert "**调用**" in zh[1]["content"] and "（无输出）" in zh[1]["content"] and "已不可用" in zh[1]["content"]
    assert "（工具运行前已停止）" in zh[2]["content"]
    assert "回复中断" in zh[3]["content"]
    assert words == [[], [], ["half"]]  # only the model's own text is Latin
    en = agent_messages(_steps())
    assert "**Call**" in en[1]["content"] and "(stopped before the tool ran)" in en[2]["content"]


def test_a_reopened_draft_says_how_it_ended_in_the_page_language():
    draft = ArticleDraft(title="T", status="stopped", step="captions")
    zh = status_notice(draft, "zh")
    assert "撰写图片标题" in zh and "已停止" not in zh and "被停止" in zh and not LATIN_WORD.search(zh)
    assert "Write captions" in status_notice(draft, "en")
    assert status_notice(ArticleDraft(title="T", status="done"), "zh") == ""


def test_the_drafts_picker_has_no_emoji_and_names_untitled_drafts():
    assert draft_label("", 3, 1, "failed", "zh") == "无标题 · 3¶ 1▣ · ✗ 失败"
    assert draft_label("Trip", 2, 0, "done", "en") == "Trip · 2¶ 0▣"


def test_a_failed_step_says_its_reason_in_the_page_language_and_marks_model_text():
    from studio.errors import InputError
    from studio.tasks.article_model import Step
    from studio.ui.article_view import steps_markdown

    error = InputError("The model wrote nothing.", "Try again.", key="err_wrote_nothing")
    failed = steps_markdown({"write": Step("write", "failed", detail="article_d_failed",
                                           args={"reason": str(error), "error": error})}, "zh")
    assert "模型没有写出任何内容" in failed and "wrote" not in failed
    captions = steps_markdown({"captions": Step("captions", "done", 1.0, "article_d_captions",
                                                {"captions": "a <cat>"})}, "zh")
    assert "<span class='model-text'>a &lt;cat&gt;</span>" in captions


def test_an_image_source_problem_has_a_chinese_lead_in():
    from studio.core.types import Notice
    from studio.ui.article_view import notice_words

    said = Notice("gallery: skipped x.png: broken", "warning", key="article_n_source",
                  args={"problem": "gallery: skipped x.png: broken"})
    assert notice_words(said, "zh").startswith("图片来源出现问题")
    assert notice_words(said, "en") == "gallery: skipped x.png: broken"
