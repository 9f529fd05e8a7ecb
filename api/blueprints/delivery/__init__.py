"""Delivery: designated contacts, holders, certificate requests, courier batches, hand-over,
terms of use, PIN change and reset, the notification outbox and provincial overviews.

Views parse, authorise (``api.policy``), call :mod:`delivery` and serialise. A contact acts
on their own province only (and as that province's designated contact); a holder on their
own records only. PINs and codes cross these views on their way to the services and are
never echoed, logged or stored here.

One module per resource, each declaring its operations on its own
:class:`api.routing.Routes`; importing one registers nothing. The app factory
(:func:`api.app.create_app`) builds the blueprint with :func:`blueprint` and adds the
``routes`` of each module of ``RESOURCES``, in that order (the order of the OpenAPI
document). What the modules share lives in :mod:`api.delivery_common`.
"""

from api.routing import ApiBlueprint

RESOURCES = ("contacts", "holders", "mandates", "requests", "pin_reset", "batches", "reports",
             "outbox", "campaigns")


def blueprint() -> ApiBlueprint:
    """A new, empty delivery blueprint (one per application)."""
    return ApiBlueprint("delivery", __name__, url_prefix="/v1", tag="Delivery",
                        description="Contacts, holders, certificate requests, courier "
                                    "batches, hand-over, terms of use, PINs and "
                                    "notifications.")


__all__ = ["RESOURCES", "blueprint"]
