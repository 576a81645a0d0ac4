"""The article pipeline's pure parts: prompts, paragraph splitting, position parsing and fallbacks."""

from __future__ import annotations

import pytest

from studio.core.article import ArticleBlock, ArticleDraft, ArticleSession
from studio.errors import InputError
from studio.tasks.article import check_instruction
from studio.tasks.article_images import even_positions
from studio.tasks.article_prompts import clean_caption, parse_positions, prompts_for, split_paragraphs, tag


def test_official_chinese_prompts_for_internlm_families_english_otherwise():
    zh, en = prompts_for("xcomposer2"), prompts_for("hf_chat_template")
    assert zh.write("春天", "") == "根据给定标题写一个图文并茂，不重复的文章：春天"
    assert zh.positions("<Seg0> a", "") == '给定文章"<Seg0> a" 根据上述文章，选择适合插入图像的行'
    assert zh.caption("<Seg0> a", [(0, "花")], 1) == \
        '给定文章"<Seg0> a" 现在<Seg0>后插入图像对应的标题是"花"。给出适合在<Seg1>后插入的图像对应的标题。'
    assert zh.edit("insert", "B", "大纲", "A") == "在以下两段中插入一段。\n第一段：A\n第二段：B\n插入段的大纲：大纲"
    assert en.write("Spring", "notes").startswith('Write an illustrated article titled "Spring"')
    assert "Use this material:\nnotes" in en.write("Spring", "notes")


def test_paragraphs_and_tags():
    text = "# Title\n\nFirst para.\nSecond line.\n\n\n   \nThird."
    assert split_paragraphs(text) == ["# Title", "First para.", "Second line.", "Third."]
    assert len(split_paragraphs("\n".join(f"p{i}" for i in range(100)))) == 60
    assert tag(["a", "b"]) == "<Seg0> a\n<Seg1> b"


@pytest.mark.parametrize("answer, n, valid, rejected", [
    ("<Seg1>, <Seg3>", 5, [1, 3], []),
    ("适合插入图像的行是<Seg2><Seg2><Seg9>", 5, [2], [2, 9]),
    ("paragraphs 0 and 4", 5, [0, 4], []),
    ("none", 5, [], []),
    ("<Seg7>", 3, [], [7]),
])
def test_positions_are_parsed_and_nonsense_rejected(answer, n, valid, rejected):
    assert parse_positions(answer, n) == (valid, rejected)


def test_even_positions_fallback():
    assert even_positions(9, 2) == [3, 6]
    assert even_positions(3, 5) == [0, 1, 2]
    assert even_positions(1, 1) == [0]
    assert even_positions(0, 2) == []


@pytest.mark.parametrize("answer, caption", [
    ('标题是"一只猫"。', "一只猫"), ('"a red boat" on the sea', "a red boat"), ("Caption: Sunset\nmore", "Sunset"),
    ("", ""),
])
def test_captions_are_cleaned(answer, caption):
    assert clean_caption(answer) == caption


def test_instruction_checks():
    with pytest.raises(InputError, match="title is empty"):
        check_instruction(" \x00 ", "")
    with pytest.raises(InputError, match="2,000"):
        check_instruction("x" * 2001, "")
    assert check_instruction("a\x00b", " m ") == ("ab", "m")


def test_undo_snapshots():
    s = ArticleSession(ArticleDraft(blocks=[ArticleBlock("one")]))
    s.snapshot()
    s.draft.blocks[0].text = "two"
    assert s.restore() and s.draft.blocks[0].text == "one"
    assert not s.restore()


def test_captions_are_whole_sentences_never_cut_with_an_ellipsis():
    from studio.tasks.article_prompts import first_sentence

    long = "The day began with a cup of freshly brewed coffee in the cozy café. The aroma of pastries filled the air."
    assert first_sentence(long) == "The day began with a cup of freshly brewed coffee in the cozy café."
    assert clean_caption('"A very long caption that goes on about the morning light over the quiet harbour town"') == \
        "A very long caption that goes on about the morning light over the quiet harbour town"
    assert first_sentence("Dr. Smith walks home. Later") == "Dr. Smith walks home."
    rambling = first_sentence("word " * 100)
    assert "…" not in rambling and len(rambling) <= 200 and rambling.endswith("word")


def test_a_last_sentence_cut_by_the_token_limit_is_left_out():
    from studio.tasks.article_prompts import drop_unfinished

    assert drop_unfinished("One thing. Two things.\n\nThree is cut") == "One thing. Two things."
    assert drop_unfinished("Whole sentence.") == "Whole sentence."
    assert drop_unfinished("No end at all") == "No end at all"
    assert drop_unfinished("好的。不好") == "好的。"


def test_the_english_prompt_asks_for_as_many_paragraphs_as_the_budget_holds():
    en = prompts_for("hf_chat_template")
    assert "Write 4 short paragraphs" in en.write("Spring", "", 300)
    assert "Write 8 short paragraphs" in en.write("Spring", "", 4096)
    assert "Write 3 short paragraphs" in en.write("Spring", "", 50)
