"""The UI string tables: both languages have every key, areas never collide, the page's language is read."""

from types import SimpleNamespace

from studio.ui import i18n


def test_every_key_in_both_languages():
    en, zh = i18n.strings("en"), i18n.strings("zh")
    assert set(en) == set(zh)
    for area in i18n.AREAS:
        assert set(area.EN) == set(area.ZH), area.__name__


def test_areas_do_not_repeat_keys():
    seen = set(i18n.EN)
    for area in i18n.AREAS:
        clash = seen & set(area.EN)
        assert not clash, (area.__name__, clash)
        seen |= set(area.EN)


def test_page_lang_reads_the_cookie_then_the_header():
    def req(cookies=None, headers=None):
        return SimpleNamespace(cookies=cookies or {}, headers=headers or {})

    assert i18n.page_lang(req({"puyu-lang": "zh"}, {"accept-language": "en-US"})) == "zh"
    assert i18n.page_lang(req({"puyu-lang": "en"}, {"accept-language": "zh-CN"})) == "en"
    assert i18n.page_lang(req({}, {"accept-language": "zh-CN,zh;q=0.9"})) == "zh"
    assert i18n.page_lang(req({"puyu-lang": "fr"}, {})) == "en"
    assert i18n.page_lang(None) == "en"


def test_tr_formats_and_falls_back_to_english():
    assert i18n.tr("zh", "tab_chat") == "对话"
    assert i18n.tr("en", "tab_chat") == "Chat"


def test_a_count_of_one_takes_the_singular_form():
    assert i18n.tr("en", "stats_tokens", count=1, n=1) == "1 token"
    assert i18n.tr("en", "stats_tokens", count=2, n=2) == "2 tokens"
    assert i18n.tr("zh", "stats_tokens", count=1, n=1) == "1 个 token"
    assert i18n.tr("en", "tab_chat", count=1) == "Chat"  # no singular form: the string as it is
