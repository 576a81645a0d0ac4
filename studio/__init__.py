"""Puyu Studio: one local studio for the InternLM model family."""

__version__ = "0.1.0"
