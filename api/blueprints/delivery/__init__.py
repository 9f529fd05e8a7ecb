"""Delivery: designated contacts, holders, certificate requests, courier batches, hand-over,
terms of use, PIN change and reset, the notification outbox and provincial overviews.

Views parse, authorise (``api.policy``), call :mod:`delivery` and serialise. A contact acts
on their own province only (and as that province's designated contact); a holder on their
own records only. PINs and codes cross these views on their way to the services and are
never echoed, logged or stored here.
"""

import importlib

from api.blueprints.delivery.common import bp

#: One module per resource, each declaring its operations on ``bp``; imported in this order,
#: which is the order of the OpenAPI document.
RESOURCES = ("contacts", "holders", "mandates", "requests", "pin_reset", "batches", "reports",
             "outbox", "campaigns")
for _resource in RESOURCES:
    importlib.import_module(f"{__name__}.{_resource}")

__all__ = ["RESOURCES", "bp"]
