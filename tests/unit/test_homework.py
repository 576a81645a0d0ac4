"""The homework bundle: zip members, the JSON record's keys, secrets left out, the HTML page's transcript."""

from __future__ import annotations

import io
import json
import zipfile
from html.parser import HTMLParser
from importlib import metadata

import pytest
from PIL import Image

from studio.config import StudioConfig
from studio.core.article import ArticleBlock, ArticleDraft, ArticleImage
from studio.core.session import ChatSession
from studio.core.types import Message
from studio.exports.homework import HTML_NAME, JSON_NAME, LABEL_KEYS
from studio.services import build_services
from studio.tasks import homework
from studio.ui.strings import homework as strings

LABELS = {key: strings.EN[f"hw_{key}"] for key in LABEL_KEYS}
STATS = {"prompt_tokens": 21, "completion_tokens": 34, "first_token_s": 0.42, "seconds": 3.5,
         "tokens_per_s": 11.25, "finish_reason": "stop"}
ANSWER = "Steps:\n\n- first **bold** step\n- second\n\n```python\nprint('hi')\n```"
API_KEY = "sk-SECRET-api-key-123"
SERVER_KEY = "SECRET-server-key-456"
URL_PASSWORD = "SECRETpw789"


def _services(tmp_path, engines: dict, **extra):
    return build_services(StudioConfig(engines=engines, **extra), tmp_path / "data")


@pytest.fixture
def hf_services(tmp_path):
    return _services(tmp_path, {"chat": {"engine": "hf", "model_path": str(tmp_path / "model"), "family": "internlm2",
                                         "label": "tiny", "defaults": {"max_new_tokens": 77}}})


def _session() -> ChatSession:
    reply = Message.of("assistant", ANSWER)
    reply.meta = {"stats": dict(STATS)}
    return ChatSession(system_prompt="Be brief.", messages=[Message.of("user", "How <b>now</b>?"), reply,
                                                            Message.of("user", "again"), Message.of("assistant", "ok")])


def _unzip(data: bytes) -> tuple[list[str], dict, str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist(), json.loads(zf.read(JSON_NAME)), zf.read(HTML_NAME).decode("utf-8")


class _Elements(HTMLParser):
    """Tags seen and the text inside each tag kind."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        self.text.setdefault(tag, "")

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        for tag in set(self.stack):
            self.text[tag] += data


def _elements(html: str) -> dict[str, str]:
    parser = _Elements()
    parser.feed(html)
    return parser.text


def test_the_conversation_bundle_holds_the_page_and_the_record(hf_services):
    result = homework.conversation_homework(hf_services, _session(), LABELS)
    names, record, html = _unzip(result.data)
    assert names == [HTML_NAME, JSON_NAME] and result.filename.endswith("-homework.zip")
    assert {"format", "version", "kind", "exported_at", "title", "model", "engine", "device", "versions", "config",
            "sampling", "system_prompt", "transcript"} <= set(record)
    assert record["kind"] == "conversation" and record["system_prompt"] == "Be brief."
    assert record["model"] == {"name": "tiny", "folder": record["config"]["model_path"], "file": None,
                               "family": "internlm2"}
    assert record["engine"]["engine"] == "hf" and record["engine"]["backend"] == "transformers"
    assert set(record["versions"]) == {"puyu-studio", "python", "torch", "transformers", "lmdeploy", "gradio"}
    assert record["config"]["defaults"]["max_new_tokens"] == 77  # the engine's options as loaded
    assert record["sampling"] == ChatSession().params.model_dump(mode="json")
    assert [(m["role"], m["content"]) for m in record["transcript"]] == [
        ("user", "How <b>now</b>?"), ("assistant", ANSWER), ("user", "again"), ("assistant", "ok")]
    assert [m.get("stats") for m in record["transcript"]] == [None, STATS, None, None]


def test_the_page_renders_the_transcript_and_each_replys_timing(hf_services):
    _, _, html = _unzip(homework.conversation_homework(hf_services, _session(), LABELS).data)
    found = _elements(html)
    assert "first bold step" in found["li"] and "bold" in found["strong"]
    assert "print('hi')" in found["pre"] and "codehilite" in html  # code highlighted (or at least monospaced)
    assert "How <b>now</b>?" in found["div"] and "b" not in found  # the user's HTML shown as text, never markup
    assert "Tokens: 34" in html and "First token: 0.42 s" in html and "11.2 tok/s" in html
    assert html.count("Speed: —") == 1  # the reply without stored timing says so, the timed one does not
    assert "<script" not in html and "Content-Security-Policy" in html


def test_secrets_are_left_out(tmp_path):
    services = _services(tmp_path, {"chat": {"engine": "openai_compat", "api_key": API_KEY,
                                             "base_url": f"http://learner:{URL_PASSWORD}@gpu-node:23333/v1"}},
                         api={"keys": [SERVER_KEY]})
    result = homework.conversation_homework(services, _session(), LABELS)
    with zipfile.ZipFile(io.BytesIO(result.data)) as zf:
        raw = b"".join(zf.read(name) for name in zf.namelist())
    for secret in (API_KEY, SERVER_KEY, URL_PASSWORD):
        assert secret.encode() not in raw
    _, record, _ = _unzip(result.data)
    assert "api_key" not in record["config"] and record["config"]["base_url"] == "http://gpu-node:23333/v1"
    assert record["engine"]["backend"] == "remote OpenAI-compatible server"


def test_credential_names_go_and_token_counts_stay():
    cleaned = homework.without_secrets({"max_new_tokens": 5, "headers": {"X-Api-Key": "k"}, "api_key": "k",
                                        "nested": [{"password": "p", "auth_token": "t", "keep": 1}]})
    assert cleaned == {"max_new_tokens": 5, "nested": [{"keep": 1}]}


def test_a_missing_package_reads_not_installed(monkeypatch):
    real = metadata.version

    def version(name):
        if name == "lmdeploy":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    found = homework.versions()
    assert found["lmdeploy"] == "not installed" and found["gradio"] == real("gradio")


def test_the_article_bundle_inlines_its_pictures(hf_services, tmp_path):
    picture = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(picture)
    draft = ArticleDraft(title="Cats", instruction="Write about cats", model="tiny",
                         blocks=[ArticleBlock("Cats **sleep**.", ArticleImage(str(picture), "A sleeping cat")),
                                 ArticleBlock("The end.")])
    result = homework.article_homework(hf_services, draft, LABELS)
    names, record, html = _unzip(result.data)
    assert names == [HTML_NAME, JSON_NAME] and result.warnings == ()
    assert record["kind"] == "article" and record["model"]["written_by"] == "tiny"
    assert [b["text"] for b in record["article"]["blocks"]] == ["Cats **sleep**.", "The end."]
    assert record["article"]["blocks"][0]["image"] == {"caption": "A sleeping cat", "source": "gallery"}
    assert record["sampling"]["max_new_tokens"] == draft.params.max_new_tokens
    found = _elements(html)
    assert "sleep" in found["strong"] and "A sleeping cat" in found["figcaption"]
    assert 'src="data:image/png;base64,' in html


def test_the_page_speaks_the_given_language(hf_services):
    zh = {key: strings.ZH[f"hw_{key}"] for key in LABEL_KEYS}
    _, _, html = _unzip(homework.conversation_homework(hf_services, _session(), zh, "zh").data)
    assert '<html lang="zh">' in html and "对话记录" in html and "首 token 用时: 0.42 s" in html
    assert "Transcript" not in html
