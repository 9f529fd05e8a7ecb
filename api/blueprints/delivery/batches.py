"""Courier batches: prepared per province, dispatched with a tracking number, received."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask import url_for
from sqlalchemy.orm import Session

from api.delivery_common import PROVINCE, BatchStatus, acting_contact_id
from api.policy import Scope, merge_filter
from api.routing import Call, Routes
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.flaskapp import wiring
from delivery import (
    batches,
)
from delivery.models import CourierBatch
from delivery.validation import (
    TRACKING_MAX_LENGTH,
    TRACKING_MIN_LENGTH,
)

routes = Routes()


@dataclass(frozen=True)
class BatchOut:
    id: int
    province_code: str
    contact_id: int
    status: BatchStatus
    courier: str
    tracking_number: str | None
    prepared_at: datetime
    dispatched_at: datetime | None
    received_at: datetime | None
    request_ids: list[int]


@dataclass(frozen=True)
class BatchQuery(PageQuery):
    province: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    status: BatchStatus | None = None


@dataclass(frozen=True)
class PrepareBatchIn:
    province_code: str = field(metadata=rule(pattern=PROVINCE))


@dataclass(frozen=True)
class DispatchIn:
    tracking_number: str = field(metadata=rule(min_length=TRACKING_MIN_LENGTH,
                                               max_length=TRACKING_MAX_LENGTH,
                                               description="Amana tracking number"))


@dataclass(frozen=True)
class ReceiveIn:
    received_at: datetime | None = field(default=None, metadata=rule(
        description="When the parcel arrived, if earlier than now."))


def batch_out(session: Session, b: CourierBatch, request_ids: list[int] | None = None
              ) -> BatchOut:
    ids = request_ids if request_ids is not None else \
        [r.id for r in batches.batch_requests(session, b.id)]
    return BatchOut(b.id, b.province_code, b.contact_id, b.status,  # type: ignore[arg-type]
                    b.courier, b.tracking_number, b.prepared_at, b.dispatched_at,
                    b.received_at, ids)


def _load_batch(call: Call, batch_id: int) -> CourierBatch:
    found = batches.get_batch(call.session, batch_id)
    call.authorize(Scope(province_code=found.province_code))
    return found


@routes.operation("GET", "/batches", action="batches.read", query=BatchQuery,
                  response=page_of(BatchOut), summary="Courier batches")
def list_batches(call: Call, query: BatchQuery) -> object:
    province = merge_filter(call.list_scope(), province_code=query.province)
    found = batches.list_batches(call.session, province_code=province, status=query.status,
                                 limit=query.limit, offset=query.offset)
    ids = batches.request_ids_by_batch(call.session, [b.id for b in found.items])
    return make_page(BatchOut, [batch_out(call.session, b, ids[b.id]) for b in found.items],
                     found.total, query.limit, query.offset)


@routes.operation("POST", "/batches", action="batches.ship", body=PrepareBatchIn,
                  response=BatchOut, status=201, errors=(409,),
                  summary="Put a province's personalised device tokens into its open batch")
def prepare_batch(call: Call, body: PrepareBatchIn) -> BatchOut:
    call.authorize(Scope(province_code=body.province_code))
    found = batches.prepare_batch(call.session, call.clock, body.province_code,
                                  actor=call.actor)
    call.location = url_for("delivery.get_batch", batch_id=found.id)
    return batch_out(call.session, found)


@routes.operation("GET", "/batches/<id:batch_id>", action="batches.read", response=BatchOut,
                  summary="One courier batch")
def get_batch(call: Call, batch_id: int) -> BatchOut:
    return batch_out(call.session, _load_batch(call, batch_id))


@routes.operation("POST", "/batches/<id:batch_id>/dispatch", action="batches.ship",
                  body=DispatchIn, response=BatchOut, errors=(409,),
                  summary="Hand the parcel to the courier with its tracking number")
def dispatch(call: Call, batch_id: int, body: DispatchIn) -> BatchOut:
    _load_batch(call, batch_id)
    found = batches.dispatch_batch(call.session, call.clock, batch_id,
                                   tracking_number=body.tracking_number, actor=call.actor,
                                   policy=wiring().policy)
    return batch_out(call.session, found)


@routes.operation("POST", "/batches/<id:batch_id>/receive", action="batches.receive",
                  body=ReceiveIn, response=BatchOut, errors=(409,),
                  summary="The contact received the parcel")
def receive(call: Call, batch_id: int, body: ReceiveIn) -> BatchOut:
    found = _load_batch(call, batch_id)
    done = batches.receive_batch(call.session, call.clock, batch_id, actor=call.actor,
                                 contact_id=acting_contact_id(call, found.province_code),
                                 received_at=body.received_at)
    return batch_out(call.session, done)
