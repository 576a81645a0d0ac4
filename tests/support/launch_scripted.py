"""`python -m tests.support.launch_scripted …` runs launch.py's main with the scripted test engine
registered, so crash tests can `kill -9` a real studio process whose replies are deterministic
(`model_path: "script:NAME:REPLIES"` queues a reply list at load, as no test can reach the process)."""

from __future__ import annotations

import sys

from launch import main
from tests.support.scripted import scripted_registered


def run() -> int:
    """launch.py's main, with "scripted" in ENGINES."""
    with scripted_registered():
        return main()


if __name__ == "__main__":
    sys.exit(run())
