"""`python -m tests.support.launch_scripted …` runs launch.py's main with the scripted test engine
registered, so crash tests can `kill -9` a real studio process whose replies are deterministic."""

from __future__ import annotations

import sys

import tests.support.scripted  # noqa: F401  registers the scripted engine
from launch import main

if __name__ == "__main__":
    sys.exit(main())
