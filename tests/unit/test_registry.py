"""The generic registry: register, look up, and registrations scoped to a block (as tests use them)."""

from __future__ import annotations

import pytest

from studio.errors import UnknownName
from studio.registry import Registry


def test_unregister_removes_the_name_and_returns_what_it_named():
    reg = Registry("thing")
    reg.register("a")(len)
    assert reg.unregister("a") is len
    assert "a" not in reg and reg.names() == []
    with pytest.raises(UnknownName, match="thing 'a' unknown"):
        reg.unregister("a")


def test_registered_lasts_for_the_block_even_when_it_raises():
    reg = Registry("thing")
    with reg.registered("a", len) as obj:
        assert obj is len and reg.get("a") is len
    assert "a" not in reg
    with pytest.raises(RuntimeError), reg.registered("b", str):
        raise RuntimeError("boom")
    assert "b" not in reg


def test_registered_refuses_a_name_already_taken_and_leaves_it():
    reg = Registry("thing")
    reg.register("a")(len)
    with pytest.raises(ValueError, match="registered twice"), reg.registered("a", str):
        pass
    assert reg.get("a") is len
