"""ArxivSearch against a local fake arXiv API: results, and every failure as an error result (never raised)."""

from __future__ import annotations

import socket
import threading

import pytest

from studio.tools.arxiv import ArxivSearch, parse_feed
from tests.support.arxiv_server import SAMPLE, arxiv_server
from tests.support.waits import wait_until

NETWORK = "needs the network"


@pytest.fixture(scope="module")
def server():
    with arxiv_server() as running:
        yield running


def search(url, arguments, **kwargs):
    return ArxivSearch(base_url=url, trust_env=False, **kwargs).run(arguments, threading.Event())


def test_results_give_titles_authors_dates_and_capped_abstracts(server):
    result = search(server.url(), {"query": "InternLM2 agent", "max_results": 2}, abstract_chars=200)
    assert result.ok, result.error
    first, second = result.text.split("\n\n")
    assert first.startswith("1. InternLM2 Technical Report\n")
    assert "Authors: Zheng Cai, Maosong Cao, Haojiong Chen, Kai Chen, Keyu Chen, Xin Chen et al." in first
    assert "Published: 2024-03-26" in first and "URL: http://arxiv.org/abs/2403.17297v1" in first
    abstract = first.split("Abstract: ")[1]
    assert abstract.startswith("The evolution of Large Language Models (LLMs) like ChatGPT and GPT-4 has sparked")
    assert abstract.endswith(" …") and len(abstract) <= 202 and "\n" not in abstract
    assert second.startswith("2. ReAct: Synergizing Reasoning and Acting in Language Models\n")
    assert "Authors: Shunyu Yao, Jeffrey Zhao\n" in second and "Published: 2022-10-06" in second
    assert server.queries[-1] == {"search_query": ["all:InternLM2 agent"], "start": ["0"], "max_results": ["2"]}


def test_max_results_is_capped_at_five_and_defaults_to_three(server):
    assert search(server.url(), {"query": "llm", "max_results": 50}).ok
    assert server.queries[-1]["max_results"] == ["5"]
    assert search(server.url(), {"query": "llm"}).ok
    assert server.queries[-1]["max_results"] == ["3"]


def test_no_papers_is_a_plain_answer(server):
    result = search(server.url("/empty"), {"query": "zzzz"})
    assert result.ok and result.text == "No arXiv papers found for 'zzzz'."


@pytest.mark.parametrize("arguments, words", [
    ({}, "missing required argument 'query'"),
    ({"query": "  "}, "'query' is empty"),
    ({"query": 3}, "'query' must be string"),
    ("transformers", "must be a JSON object"),
    ({"query": "x", "limit": 3}, "unknown argument 'limit'"),
])
def test_bad_arguments_are_error_results_without_a_request(server, arguments, words):
    before = len(server.queries)
    result = search(server.url(), arguments)
    assert not result.ok and words in result.error
    assert len(server.queries) == before


@pytest.mark.parametrize("route, words", [
    ("/error", "answered HTTP 500"),
    ("/garbage", "could not be read (not XML"),
    ("/html", "could not be read"),
    ("/api-error", "arXiv reported an error: incorrect id format for 1234.5678"),
    ("/entities", "declares a DTD"),
    ("/missing", "answered HTTP 404"),
])
def test_failing_answers_are_error_results(server, route, words):
    result = search(server.url(route), {"query": "llm"})
    assert not result.ok and result.text == ""
    assert words in result.error and NETWORK in result.error


def test_a_server_that_never_answers_is_a_timeout_result(server):
    result = search(server.url("/hang"), {"query": "llm"}, timeout_s=0.3)
    assert not result.ok and "did not answer within 0.3 s" in result.error and NETWORK in result.error


def test_a_closed_port_says_arxiv_cannot_be_reached():
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = search(f"http://127.0.0.1:{port}/api/query", {"query": "llm"})
    assert not result.ok and f"Could not reach arXiv at http://127.0.0.1:{port}/api/query" in result.error
    assert NETWORK in result.error


def test_stop_before_the_search_makes_no_request(server):
    before = len(server.queries)
    cancel = threading.Event()
    cancel.set()
    result = ArxivSearch(base_url=server.url(), trust_env=False).run({"query": "llm"}, cancel)
    assert not result.ok and "stopped" in result.error and len(server.queries) == before


def test_stop_while_the_server_hangs_returns_without_waiting_for_the_timeout(server):
    before = len(server.queries)
    cancel = threading.Event()
    box = []
    tool = ArxivSearch(base_url=server.url("/hang"), timeout_s=600, trust_env=False)
    runner = threading.Thread(target=lambda: box.append(tool.run({"query": "llm"}, cancel)), daemon=True)
    runner.start()
    wait_until(lambda: len(server.queries) > before, "the request to reach the fake server")
    assert not box  # still waiting on the hanging server
    cancel.set()
    wait_until(lambda: box, "the stopped search to return")
    assert not box[0].ok and box[0].error == "The search was stopped."  # not the 600 s timeout's error


def test_parse_feed_reads_the_sample():
    papers = parse_feed(SAMPLE)
    assert [p.title for p in papers] == ["InternLM2 Technical Report",
                                        "ReAct: Synergizing Reasoning and Acting in Language Models"]
    assert len(papers[0].authors) == 7


def test_the_spec_is_an_openai_function():
    spec = ArxivSearch().spec.openai()
    assert spec["function"]["name"] == "arxiv_search"
    assert spec["function"]["parameters"]["required"] == ["query"]
    assert spec["function"]["parameters"]["properties"]["max_results"]["maximum"] == 5
