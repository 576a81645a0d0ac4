"""Errors a user hits on the page are worded in the page's language; the API and the log keep the English."""

from __future__ import annotations

import gradio as gr
import pytest

from studio.errors import InputError
from studio.tasks import article
from studio.ui.errors import error_text, user_errors


def _page(lang: str) -> gr.Request:
    return gr.Request(cookies={"puyu-lang": lang}, headers={})


def test_a_keyed_error_is_worded_in_the_page_language_with_its_hint():
    with pytest.raises(InputError) as caught:
        article.check_instruction("   ", "")
    exc = caught.value
    assert str(exc) == "The title is empty. Type a title or an instruction for the article, then Write."
    assert error_text(exc, "zh") == "标题是空的。 请输入标题或写作要求，再点“开始创作”。"
    assert error_text(exc, "en") == str(exc)


def test_values_fill_the_worded_error():
    with pytest.raises(InputError) as caught:
        article.check_instruction("x" * (article.MAX_INSTRUCTION + 1), "")
    assert f"{article.MAX_INSTRUCTION + 1:,} 个字符" in error_text(caught.value, "zh")


def test_an_error_without_a_key_keeps_its_english():
    assert error_text(InputError("Plain.", "Do this."), "zh") == "Plain. Do this."
    assert error_text(InputError("Odd.", key="err_title_long", values={}), "zh") == "Odd."  # values missing


def test_user_errors_words_a_handler_error_by_the_request():
    @user_errors
    def handler(text, request: gr.Request):
        article.check_instruction(text, "")

    @user_errors
    def streaming(text, request: gr.Request):
        yield from ()
        article.check_instruction(text, "")

    with pytest.raises(gr.Error, match="标题是空的"):
        handler("", _page("zh"))
    with pytest.raises(gr.Error, match="标题是空的"):
        list(streaming("", request=_page("zh")))
    with pytest.raises(gr.Error, match="The title is empty"):
        handler("", _page("en"))


def test_a_bug_gets_an_id_in_the_page_language():
    @user_errors
    def broken(request: gr.Request):
        raise RuntimeError("boom")

    with pytest.raises(gr.Error, match=r"内部错误（编号 [0-9a-f]{8}）"):
        broken(_page("zh"))
    with pytest.raises(gr.Error, match=r"Internal error \(id [0-9a-f]{8}\)"):
        broken(None)


def test_an_empty_message_is_refused_in_the_page_language():
    from studio.tasks.user_text import validate_prompt

    with pytest.raises(InputError) as caught:
        validate_prompt(None, "   ")  # refused before the config is read
    assert error_text(caught.value, "zh") == "消息是空的。 输入内容后按回车发送。"
    assert str(caught.value) == "The message is empty. Type something, then press Enter."
