"""Before Write: the engine's article defaults, the image position rule, the time estimate and the
title-language check; with the scripted engine, a fixed image count never asks the model where."""

from __future__ import annotations

import threading

import pytest

from studio.config import load_config
from studio.core.article import ArticleParams, ArticleSession
from studio.core.types import Notice
from studio.services import build_services
from studio.tasks import article
from studio.tasks import article_plan as plan
from studio.tasks.article_images import even_positions
from studio.tasks.article_model import Step
from tests.support.apps import EMBEDDED_CONFIG, write_config
from tests.support.scripted import ARTICLE_TEXT, CAT_CAPTION, scripted


@pytest.fixture
def embedded(tmp_path):
    """Services over the shipped default config (nothing is loaded)."""
    svc = build_services(load_config(EMBEDDED_CONFIG), tmp_path / "data", cache_dir=tmp_path / "cache")
    yield svc
    svc.close()


@pytest.fixture
def scripted_services(tmp_path, scripted_engine):
    cfg = write_config(tmp_path, extra="")
    svc = build_services(load_config(cfg), tmp_path / "data", cache_dir=tmp_path / "cache")
    svc.engines.start()
    assert svc.engines.wait("chat", 60).state == "ready"
    yield svc
    svc.close()


@pytest.mark.parametrize("paragraphs, count, expected", [
    (11, 2, [3, 7]), (4, 2, [1, 2]), (5, 1, [2]), (6, 3, [1, 3, 4]), (3, 5, [0, 1, 2]), (0, 2, []),
])
def test_a_fixed_count_is_spread_by_rule(paragraphs, count, expected):
    got = even_positions(paragraphs, count)
    assert got == expected and got == even_positions(paragraphs, count)  # deterministic
    assert len(set(got)) == len(got) == min(count, paragraphs)


def test_the_embedded_model_gets_the_short_defaults_and_no_vision_picking(embedded):
    params = plan.defaults(embedded, "chat")
    assert (params.max_new_tokens, params.image_count, params.beams, params.do_sample) == (300, 2, 1, False)
    assert params.model_selects is False and plan.sees_images(embedded, "chat") is False


def test_a_vision_family_sees_images_and_an_unknown_one_is_unknown(tmp_path, scripted_engine):
    for family, sees in (("internvl2", True), ("xcomposer2", True), ("auto", None), ("internlm2", False)):
        cfg = write_config(tmp_path, model_path="/nowhere").read_text().replace("family: auto", f"family: {family}")
        path = tmp_path / f"{family}.yaml"
        path.write_text(cfg)
        svc = build_services(load_config(path), tmp_path / "data", cache_dir=tmp_path / "cache")
        assert plan.sees_images(svc, "chat") is sees, family
        assert plan.defaults(svc, "chat") == ArticleParams(model_selects=sees is not False)
        svc.close()


@pytest.mark.parametrize("title, lang", [
    ("春天的早晨", "zh"), ("InternLM2 写作", "zh"), ("東京のカフェ", "ja"), ("서울의 봄", "ko"),
    ("Москва весной", "ru"), ("A visit to a coffee shop", "en"), ("Café à Paris", None), ("2024!", None),
])
def test_the_title_language_is_read_from_its_script(title, lang):
    assert plan.title_language(title) == lang


def test_a_chinese_title_on_an_english_only_model_is_flagged(embedded, tmp_path, scripted_engine):
    assert plan.unwritable_language(embedded, "chat", "周末去山里徒步") == "zh"
    assert plan.unwritable_language(embedded, "chat", "A weekend in the mountains") is None
    assert plan.unwritable_language(embedded, "chat", "Café à Paris") is None  # cannot tell: no notice
    unknown = build_services(load_config(write_config(tmp_path)), tmp_path / "d2", cache_dir=tmp_path / "c2")
    assert plan.unwritable_language(unknown, "chat", "周末去山里徒步") is None  # no `languages`: unknown
    unknown.close()


def test_the_estimate_uses_the_configured_speed_then_the_measured_one(embedded):
    speeds = plan.SpeedLog()
    params = plan.defaults(embedded, "chat")
    est = plan.estimate(embedded, "chat", params, speeds)
    tokens = 300 + 2 * plan.CAPTION_TOKENS  # text and two captions; no position prompt, no vision pick
    assert est.tokens == tokens and est.tokens_per_s == 20 and not est.measured
    assert est.seconds == pytest.approx(tokens / 20 + 3 * plan.CALL_S + 2 * plan.SEARCH_S)
    speeds.record("chat", 8, 0.1)  # too short to say anything
    assert not plan.estimate(embedded, "chat", params, speeds).measured
    speeds.record("chat", 200, 4.0)
    measured = plan.estimate(embedded, "chat", params, speeds)
    assert measured.measured and measured.tokens_per_s == pytest.approx(208 / 4.1) and measured.seconds < est.seconds
    speeds.record("chat", 20, 2.0)  # a caption, mostly prompt time: weighed by its length, not taken alone
    assert plan.estimate(embedded, "chat", params, speeds).tokens_per_s == pytest.approx(228 / 6.1)
    auto = plan.estimate(embedded, "chat", params.model_copy(update={"image_count": None}), speeds)
    assert auto.tokens == tokens + plan.POSITION_TOKENS
    none = plan.estimate(embedded, "chat", params.model_copy(update={"image_count": 0}), speeds)
    assert none.tokens == 300
    assert plan.estimate(embedded, "chat", params.model_copy(update={"beams": 3}), speeds).tokens == tokens + 600


def test_no_speed_known_means_no_estimate(tmp_path, scripted_engine):
    svc = build_services(load_config(write_config(tmp_path)), tmp_path / "data", cache_dir=tmp_path / "cache")
    assert plan.estimate(svc, "chat", ArticleParams(), plan.SpeedLog()) is None
    svc.close()


def test_a_fixed_count_never_asks_the_model_where_and_a_write_is_timed(scripted_services):
    engine = scripted(scripted_services)
    engine.enqueue(ARTICLE_TEXT, CAT_CAPTION, CAT_CAPTION)  # text, then one caption per picture: nothing else
    speeds, session = plan.SpeedLog(), ArticleSession()
    events = list(article.run(scripted_services, "u", session, "Cats", "", ArticleParams(image_count=2), [],
                              threading.Event(), speeds))
    assert engine.clear() == []
    positions = next(e for e in events if isinstance(e, Step) and e.key == "positions" and e.state == "done")
    assert positions.detail == "article_d_positions_spread" and positions.args["positions"] == "¶2, ¶3"
    assert [i for i, b in enumerate(session.draft.blocks) if b.image] == [1, 2]
    assert not any(isinstance(e, Notice) and "positions" in e.key for e in events)


def test_a_chinese_title_is_warned_about_before_the_model_is_asked(embedded, monkeypatch):
    session = ArticleSession()
    events = article.run(embedded, "u", session, "周末去山里徒步", "", ArticleParams(), [], threading.Event())
    first = next(events)
    assert isinstance(first, Notice) and first.key == "article_n_language" and first.level == "warning"
    assert first.args["language"] == "zh" and first.args["writes"] == "en"
    assert embedded.engines.state("chat").state == "idle"  # warned before anything was loaded or asked
    events.close()
