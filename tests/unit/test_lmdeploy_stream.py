"""Reading one lmdeploy request through the pipeline's async engine, on a real event loop thread, with a
stand-in async engine (the real one needs CUDA: tests/gpu/test_lmdeploy_gpu.py runs this path)."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from studio.engines.lmdeploy_stream import Piece, merge, read


class _Loop:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _AsyncEngine:
    """preprocess + generate as lmdeploy's AsyncEngine has them; `tokens` responses, then a finish."""

    def __init__(self, tokens=6, fail=None, gap_s=0.0):
        self.tokens, self.fail, self.gap_s = tokens, fail, gap_s
        self.cancelled = threading.Event()
        self.requests = []

    async def preprocess(self, messages, session_id, gen_config):
        if self.fail:
            raise self.fail
        self.requests.append((messages, session_id, gen_config))
        return SimpleNamespace(input_token_len=9)

    async def generate(self, request, stream_response=True):
        try:
            for i in range(self.tokens):
                await asyncio.sleep(self.gap_s)
                last = i == self.tokens - 1
                yield SimpleNamespace(response=f"t{i} ", generate_token_len=i + 1, input_token_len=9,
                                      finish_reason="length" if last else None)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
def loop():
    lp = _Loop()
    yield lp
    lp.close()


def _pipe(loop, engine):
    return SimpleNamespace(internal_thread=loop, async_engine=engine)


def test_a_reader_that_keeps_pace_gets_every_response(loop):
    engine = _AsyncEngine(tokens=5, gap_s=0.02)
    got = list(read(_pipe(loop, engine), [{"role": "user", "content": "hi"}], "sess", "gen"))
    assert "".join(p.text for p in got) == "t0 t1 t2 t3 t4 "
    assert got[-1].finish_reason == "length" and got[-1].generate_token_len == 5 and got[-1].input_token_len == 9
    assert len(got) >= 2  # streamed, not one piece at the end
    assert engine.requests == [([{"role": "user", "content": "hi"}], "sess", "gen")]


def test_a_reader_that_falls_behind_catches_up_in_one_step(loop):
    engine = _AsyncEngine(tokens=40)
    gate, produced = threading.Event(), threading.Event()
    inner = engine.generate

    async def gated(request, stream_response=True):
        i = 0
        async for out in inner(request, stream_response):
            yield out
            i += 1
            while i == 1 and not gate.is_set():  # the first response alone, until the reader has it
                await asyncio.sleep(0.001)
        produced.set()

    engine.generate = gated
    stream = read(_pipe(loop, engine), [], "sess", "gen")
    first = next(stream)
    assert first.text == "t0 "
    gate.set()
    assert produced.wait(5)  # the other 39 wait in the queue while the reader is busy elsewhere
    rest = list(stream)
    assert len(rest) == 1 and rest[0].text == "".join(f"t{i} " for i in range(1, 40))
    assert rest[0].finish_reason == "length" and rest[0].generate_token_len == 40


def test_a_refused_request_is_one_error_piece_with_lmdeploys_message(loop):
    err = RuntimeError("input 9000 tokens exceeds session_len 8192")
    err.code, err.message = SimpleNamespace(value="context_length_exceeded"), str(err)
    got = list(read(_pipe(loop, _AsyncEngine(fail=err)), [], "sess", "gen"))
    assert len(got) == 1 and got[0].finish_reason == "error"
    assert got[0].error_code == "context_length_exceeded" and "exceeds session_len" in got[0].error_message


def test_closing_the_reader_cancels_the_request_on_the_loop(loop):
    engine = _AsyncEngine(tokens=1000, gap_s=0.01)
    stream = read(_pipe(loop, engine), [], "sess", "gen")
    next(stream)
    stream.close()
    assert engine.cancelled.wait(5)


def test_pipelines_without_the_async_engine_are_read_through_stream_infer():
    calls = []

    def stream_infer(messages, sessions, gen_config):
        calls.append((messages, sessions, gen_config))
        yield SimpleNamespace(text="a", finish_reason=None)
        yield SimpleNamespace(text="b", finish_reason="stop")

    got = list(read(SimpleNamespace(stream_infer=stream_infer), ["m"], "s", "g"))
    assert [r.text for r in got] == ["a", "b"] and calls == [(["m"], "s", "g")]


def test_merge_keeps_the_finish_and_the_last_counts():
    pieces = [Piece("a", 1, 4), Piece("b", 2, 4, "error", "oom", "out of memory"), Piece("", 2, 4)]
    m = merge(pieces)
    assert (m.text, m.generate_token_len, m.finish_reason, m.error_code) == ("ab", 2, "error", "oom")
