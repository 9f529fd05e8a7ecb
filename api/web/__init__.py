"""The web interface for people (``/web``): see :mod:`api.web.pages` and docs/web.md.

Each journey's views register on the one blueprint: :mod:`api.web.pages` (login,
dashboards, the province page, the operator's queue, the holder's page) and
:mod:`api.web.contact` (the provincial contact's forms), :mod:`api.web.holder` (the
holder's own credentials, terms and PINs), :mod:`api.web.incidents` (a lost, stolen or
damaged token), :mod:`api.web.verify` (the public verification page),
:mod:`api.web.operator` (search, bulk decisions, personalisation, batches),
:mod:`api.web.registry` (the certificate registry),
:mod:`api.web.admin` (the DGCL administrator's pages and the CSV report)."""

from api.web import account as _account  # noqa: F401
from api.web import admin as _admin  # noqa: F401
from api.web import campaigns as _campaigns  # noqa: F401
from api.web import contact as _contact  # noqa: F401  (registers its views)
from api.web import expiring as _expiring  # noqa: F401
from api.web import holder as _holder  # noqa: F401
from api.web import incidents as _incidents  # noqa: F401
from api.web import oauth as _oauth  # noqa: F401
from api.web import operator as _operator  # noqa: F401
from api.web import registry as _registry  # noqa: F401
from api.web import signin as _signin  # noqa: F401
from api.web import verify as _verify  # noqa: F401
from api.web.pages import bp

__all__ = ["bp"]
