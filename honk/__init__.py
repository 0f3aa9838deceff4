"""Honk: a chat message becomes a merged, tested, built and installed change."""

__version__ = "0.1.0"
