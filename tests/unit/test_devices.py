"""Device facts for the System panel and the homework record."""


def test_device_stats_ignore_a_torch_still_being_imported(monkeypatch):
    """A loader thread importing torch leaves a partial module in sys.modules: the panel must not read it."""
    import sys
    import types

    from studio.engines import devices

    partial = types.ModuleType("torch")
    partial.__spec__ = types.SimpleNamespace(_initializing=True)
    monkeypatch.setitem(sys.modules, "torch", partial)
    assert [d.name for d in devices.device_stats()] == ["cpu (RAM)"]
    assert devices.gpu_names() is None
