"""The web interface for people (``/web``): see :mod:`api.web.pages` and docs/web.md."""

from api.web.pages import bp

__all__ = ["bp"]
