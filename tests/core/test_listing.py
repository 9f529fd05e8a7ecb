"""One window of a list: filters and order in SQL, the total counted with the same query."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from core.listing import Page, check_window, escape_like, rows_page, scalars_page
from quotas.models import Province, Region


def test_windows_cover_the_list_once(session: Session) -> None:
    query = select(Province).where(Province.region_code == "01").order_by(Province.code)
    everything = scalars_page(session, query, limit=None)
    assert everything.total == len(everything.items) > 5
    seen = []
    for offset in range(0, everything.total, 3):
        page = scalars_page(session, query, limit=3, offset=offset)
        assert page.total == everything.total  # counted, not the window's length
        seen.extend(p.code for p in page.items)
    assert seen == [p.code for p in everything.items]
    past = scalars_page(session, query, limit=3, offset=everything.total + 10)
    assert past == Page([], everything.total)


def test_rows_and_map(session: Session) -> None:
    query = select(Region.code, Region.name_fr).order_by(Region.code)
    page = rows_page(session, query, limit=2, offset=1)
    assert page.total == 12 and [code for code, _ in page.items] == ["02", "03"]
    assert page.map(lambda row: row[0]) == Page(["02", "03"], 12)


def test_bad_windows_are_refused(session: Session) -> None:
    check_window(None, 0)
    check_window(1, 0)
    for limit, offset in ((0, 0), (-1, 0), (10, -1)):
        with pytest.raises(InvalidInput):
            scalars_page(session, select(Region), limit=limit, offset=offset)


def test_like_patterns_match_literally(session: Session) -> None:
    assert escape_like(r"50%_a\b") == r"50\%\_a\\b"
    names = select(Region.code).where(Region.name_fr.like(f"%{escape_like('_')}%",
                                                          escape="\\"))
    assert list(session.scalars(names)) == []  # no region name holds an underscore
