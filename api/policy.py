"""Authorisation, decided in one place: role, action and scope.

Every API operation names one action. :data:`RULES` says, for each action, which roles may
perform it and how far: everywhere (``ANY``), only on their own province (``PROVINCE``,
provincial contacts), only on their own holder record and credentials (``OWN``, holders), or
only on what a holder has authorised (``AUTHORISED``, the permits platform's API keys). A
role absent from an action's rule is refused outright. Views never decide: they describe the
object they act on as a :class:`Scope` and ask :func:`authorize`, or ask :func:`list_scope`
for the filter every list must apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from api.accounts import Principal
from api.errors import NotPermitted, OutOfScope
from api.models import ROLE_ADMIN, ROLE_CONTACT, ROLE_HOLDER, ROLE_OPERATOR, ROLE_PLATFORM


class Reach(Enum):
    ANY = "any"
    PROVINCE = "province"
    OWN = "own"
    AUTHORISED = "authorised"


ANY, PROVINCE, OWN, AUTHORISED = Reach.ANY, Reach.PROVINCE, Reach.OWN, Reach.AUTHORISED
ADMIN, OPERATOR, CONTACT, HOLDER, PLATFORM = (ROLE_ADMIN, ROLE_OPERATOR, ROLE_CONTACT,
                                              ROLE_HOLDER, ROLE_PLATFORM)
EVERYONE = {ADMIN: ANY, OPERATOR: ANY, CONTACT: ANY, HOLDER: ANY, PLATFORM: ANY}
PEOPLE = {ADMIN: ANY, OPERATOR: ANY, CONTACT: ANY, HOLDER: ANY}

RULES: dict[str, dict[str, Reach]] = {
    # the caller's own account
    "self.read": EVERYONE,
    "self.manage": PEOPLE,
    # accounts and machine keys
    "users.read": {ADMIN: ANY, OPERATOR: ANY},
    "users.manage": {ADMIN: ANY},
    "apikeys.manage": {ADMIN: ANY},
    # reference data and quotas
    "refdata.read": EVERYONE,
    "quotas.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE},
    "quotas.policies.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: ANY},
    "quotas.policies.write": {ADMIN: ANY},
    "quotas.partnerships.write": {ADMIN: ANY},
    "quotas.billing.read": {ADMIN: ANY},
    # audit log
    "audit.read": {ADMIN: ANY},
    # delivery: designated contacts, holders, requests, courier batches
    "contacts.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE},
    "contacts.write": {ADMIN: ANY, OPERATOR: ANY},
    "holders.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE, HOLDER: OWN},
    "holders.write": {OPERATOR: ANY, CONTACT: PROVINCE},
    # a change of mandate revokes the old mandate's certificates
    "mandates.change": {OPERATOR: ANY, CONTACT: PROVINCE},
    # election campaigns: the DGCL administrator and operators run them; contacts read
    # their province's seats
    "campaigns.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE},
    "campaigns.manage": {ADMIN: ANY, OPERATOR: ANY},
    "requests.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE, HOLDER: OWN},
    "requests.create": {OPERATOR: ANY, CONTACT: PROVINCE},
    "requests.cancel": {OPERATOR: ANY, CONTACT: PROVINCE},
    "requests.cancel_personalised": {OPERATOR: ANY, CONTACT: PROVINCE},
    "requests.incident": {OPERATOR: ANY, CONTACT: PROVINCE, HOLDER: OWN},
    "requests.decide": {OPERATOR: ANY},
    "requests.personalise": {OPERATOR: ANY},
    "requests.handover": {OPERATOR: ANY, CONTACT: PROVINCE},
    "requests.activate": {OPERATOR: ANY, HOLDER: OWN},
    "batches.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE},
    "batches.ship": {OPERATOR: ANY},
    "batches.receive": {OPERATOR: ANY, CONTACT: PROVINCE},
    "outbox.read": {ADMIN: ANY, OPERATOR: ANY},
    "outbox.manage": {OPERATOR: ANY},
    # certificates and tokens
    "certificates.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE, HOLDER: OWN,
                          PLATFORM: AUTHORISED},
    "certificates.list": {ADMIN: ANY, OPERATOR: ANY},
    "certificates.manage": {OPERATOR: ANY},
    "certificates.bulk_revoke": {OPERATOR: ANY},
    "holder.terms": {HOLDER: OWN},
    "holder.pin": {HOLDER: OWN},
    "holder.contact": {HOLDER: OWN},
    "reports.read": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE},
    "reports.expiring": {ADMIN: ANY, OPERATOR: ANY, CONTACT: PROVINCE},
    # the web pages' dashboards: the country and its regions; the operator's work queue
    "oversight.read": {ADMIN: ANY, OPERATOR: ANY},
    "queue.read": {ADMIN: ANY, OPERATOR: ANY},
    # remote signing (CSC-style) and verification: the platform lists credentials and
    # relays the holder's PIN and one-time code; it signs only with the SAD they produced.
    "signing.credentials.read": {ADMIN: ANY, OPERATOR: ANY, HOLDER: OWN, PLATFORM: ANY},
    "signing.authorize": {HOLDER: OWN, PLATFORM: ANY},
    "signing.sign": {HOLDER: OWN, PLATFORM: AUTHORISED},
    "signing.verify": EVERYONE,
    # adding an archive time-stamp to a signed PDF (B-LTA): nobody's signature is made,
    # but the TSA signs; the platform and the provider's operators may ask.
    "signing.extend": {OPERATOR: ANY, PLATFORM: ANY},
}


@dataclass(frozen=True)
class Scope:
    """What an operation acts on, as far as authorisation cares."""

    province_code: str | None = None
    holder_id: int | None = None
    # Set by the signing layer when the holder authorised this client for this object.
    holder_authorised: bool = False


@dataclass(frozen=True)
class ListScope:
    """The filter a list must apply for this caller (None: no restriction)."""

    province_code: str | None = None
    holder_id: int | None = None
    authorised_only: bool = False

    @property
    def restricted(self) -> bool:
        return self.province_code is not None or self.holder_id is not None \
            or self.authorised_only


def reach(role: str, action: str) -> Reach | None:
    if action not in RULES:
        raise KeyError(f"no authorisation rule for action {action!r}")  # programming error
    return RULES[action].get(role)


def check_role(principal: Principal, action: str) -> Reach:
    """The role-level decision, before any object is loaded."""
    found = reach(principal.role, action)
    if found is None:
        raise NotPermitted(f"a {principal.role} may not perform {action}", action=action,
                           role=principal.role)
    return found


def authorize(principal: Principal, action: str, scope: Scope) -> None:
    """Refuse unless ``principal`` may perform ``action`` on the object ``scope`` describes."""
    how = check_role(principal, action)
    if how is ANY:
        return
    if how is PROVINCE:
        if principal.province_code is None or scope.province_code != principal.province_code:
            raise OutOfScope("a provincial contact acts only on their own province",
                             action=action)
        return
    if how is OWN:
        if principal.holder_id is None or scope.holder_id != principal.holder_id:
            raise OutOfScope("a holder acts only on their own records and credentials",
                             action=action)
        return
    if how is AUTHORISED:
        if not scope.holder_authorised:
            raise OutOfScope("this client acts only on what the holder authorised",
                             action=action)
        return
    raise NotPermitted(f"no rule for {action}")  # unreachable: Reach is exhaustive


def list_scope(principal: Principal, action: str) -> ListScope:
    """The restriction a list under ``action`` must apply for ``principal``."""
    how = check_role(principal, action)
    if how is PROVINCE:
        if principal.province_code is None:
            raise OutOfScope("this contact account has no province", action=action)
        return ListScope(province_code=principal.province_code)
    if how is OWN:
        if principal.holder_id is None:
            raise OutOfScope("this holder account is not linked to a holder yet",
                             action=action)
        return ListScope(holder_id=principal.holder_id)
    if how is AUTHORISED:
        return ListScope(authorised_only=True)
    return ListScope()


def merge_filter(scope: ListScope, *, province_code: str | None) -> str | None:
    """A caller's province filter, narrowed by their scope: a contact asking for another
    province is refused rather than silently shown their own."""
    if scope.province_code is None:
        return province_code
    if province_code is not None and province_code != scope.province_code:
        raise OutOfScope("a provincial contact sees only their own province")
    return scope.province_code
