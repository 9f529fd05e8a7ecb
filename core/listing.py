"""Lists read from the database, one window at a time.

A domain's list function takes a ``Session``, its filters as plain values, ``limit`` and
``offset``, and returns a :class:`Page`: the items of that window in a stable order (the
query orders by a unique key, last) and how many items match in all. Filters are applied in
SQL, never to a list already in memory, and the total is counted with the very same query,
so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.errors import InvalidInput

T = TypeVar("T")
U = TypeVar("U")

LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class Page(Generic[T]):
    """``items``: one window of a list; ``total``: how many items match, across windows."""

    items: list[T]
    total: int

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        return Page([convert(item) for item in self.items], self.total)


def check_window(limit: int | None, offset: int) -> None:
    """``limit`` is None (everything) or at least 1; ``offset`` is not negative."""
    if limit is not None and limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit", limit=limit)
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset", offset=offset)


def _window(session: Session, query: Select, limit: int | None, offset: int,
            fetch: Callable[[Select], list[Any]]) -> Page[Any]:
    check_window(limit, offset)
    windowed = query.offset(offset) if offset else query
    if limit is not None:
        windowed = windowed.limit(limit)
    items = fetch(windowed)
    if offset == 0 and (limit is None or len(items) < limit):
        return Page(items, len(items))  # the whole list fitted: no need to count
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    return Page(items, int(session.scalar(counted) or 0))


def scalars_page(session: Session, query: Select, *, limit: int | None,
                 offset: int = 0) -> Page[Any]:
    """A page of a one-entity query (``select(Model)...``): the objects themselves."""
    return _window(session, query, limit, offset, lambda q: list(session.scalars(q)))


def rows_page(session: Session, query: Select, *, limit: int | None,
              offset: int = 0) -> Page[Any]:
    """A page of a several-column query: its rows (tuples)."""
    return _window(session, query, limit, offset,
                   lambda q: [tuple(row) for row in session.execute(q)])


def escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern (with ``escape=LIKE_ESCAPE``)."""
    return (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
            .replace("_", LIKE_ESCAPE + "_"))
