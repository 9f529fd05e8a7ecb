"""delivery: a request whose credential was renewed (``superseded``), whose token was
replaced after a loss, theft or damage (``replaced``), or whose mandate ended with its
certificate revoked ``affiliationChanged`` (``ended``) leaves ``active``.

Requests earlier versions left ``active`` in those cases are moved the same way.

Revision ID: delivery_0011
"""

from __future__ import annotations

from alembic import op

revision = "delivery_0011"
down_revision = "delivery_0007"
branch_labels = None
depends_on = None

OLD = ("submitted", "approved", "personalised", "shipped", "delivered", "handed_over",
       "active", "rejected", "cancelled")
NEW = (*OLD, "superseded", "replaced", "ended")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _states(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("delivery_request") as batch:
        batch.drop_constraint("status", type_="check")
        batch.create_check_constraint("status", _in("status", values))


def upgrade() -> None:
    _states(NEW)
    # An active request whose renewal is active: its token went to the renewal.
    op.execute(
        "UPDATE delivery_request SET status = 'superseded' WHERE status = 'active' "
        "AND token_label IS NULL AND EXISTS (SELECT 1 FROM delivery_request AS r "
        "WHERE r.follows_request_id = delivery_request.id AND r.kind = 'renewal' "
        "AND r.status = 'active')")
    # An active request whose replacement token is active.
    op.execute(
        "UPDATE delivery_request SET status = 'replaced' WHERE status = 'active' "
        "AND EXISTS (SELECT 1 FROM delivery_request AS r "
        "WHERE r.follows_request_id = delivery_request.id AND r.kind = 'replacement' "
        "AND r.status = 'active')")
    # An active request of an ended mandate whose certificate was revoked with it.
    op.execute(
        "UPDATE delivery_request SET status = 'ended' WHERE status = 'active' "
        "AND EXISTS (SELECT 1 FROM delivery_mandate AS m WHERE m.id = "
        "delivery_request.mandate_id AND m.ended_on IS NOT NULL) "
        "AND EXISTS (SELECT 1 FROM pki_certificate AS c WHERE c.serial = "
        "delivery_request.certificate_serial AND c.status = 'revoked' "
        "AND c.revocation_reason = 'affiliationChanged')")


def downgrade() -> None:
    op.execute("UPDATE delivery_request SET status = 'active' "
               "WHERE status IN ('superseded', 'replaced', 'ended')")
    _states(OLD)
