"""The operator's search over requests: text (a holder's name in either language, CIN,
commune name or code, certificate serial), filters, sort and pages. A query helper for the
web pages: it reads, never writes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.clock import Clock
from delivery.models import CertificateRequest, Holder
from delivery.oversight import RequestLine, _request_lines, _request_query
from quotas.models import Commune

#: sort key -> the column it orders by
SORTS = {"age": CertificateRequest.submitted_at, "idle": CertificateRequest.updated_at,
         "id": CertificateRequest.id, "name": Holder.surname_fr,
         "province": CertificateRequest.province_code}
MAX_PER_PAGE = 100


@dataclass(frozen=True)
class Filters:
    text: str = ""
    status: str | None = None
    province_code: str | None = None
    token_form: str | None = None
    sort: str = "age"
    descending: bool = False
    page: int = 1
    per_page: int = 25


@dataclass(frozen=True)
class RequestPage:
    lines: list[RequestLine]
    total: int
    page: int
    pages: int


def search_requests(session: Session, clock: Clock, filters: Filters) -> RequestPage:
    """The requests matching every filter, one page of them, in the order asked."""
    query = _request_query()
    text = filters.text.strip()
    if text:
        like = f"%{text.lower()}%"
        query = query.where(or_(
            func.lower(Holder.given_name_fr + " " + Holder.surname_fr).like(like),
            func.lower(Holder.surname_fr + " " + Holder.given_name_fr).like(like),
            (Holder.given_name_ar + " " + Holder.surname_ar).like(f"%{text}%"),
            func.lower(Holder.cin).like(like),
            func.lower(Commune.name_fr).like(like), Commune.name_ar.like(f"%{text}%"),
            Commune.code == text,
            func.lower(CertificateRequest.certificate_serial) == text.lower()))
    if filters.status:
        query = query.where(CertificateRequest.status == filters.status)
    if filters.province_code:
        query = query.where(CertificateRequest.province_code == filters.province_code)
    if filters.token_form:
        query = query.where(CertificateRequest.token_form == filters.token_form)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    per_page = min(max(filters.per_page, 1), MAX_PER_PAGE)
    pages = max(1, -(-total // per_page))
    page = min(max(filters.page, 1), pages)
    column = SORTS.get(filters.sort, CertificateRequest.submitted_at)
    order = [column.desc() if filters.descending else column.asc(), CertificateRequest.id]
    lines = _request_lines(session, clock, query.order_by(*order)
                           .limit(per_page).offset((page - 1) * per_page))
    return RequestPage(lines, total, page, pages)
