"""One blueprint per domain. ``api.app.create_app`` registers every module listed here.

A module exports ``bp`` (an :class:`api.routing.ApiBlueprint`, so that its operations are
authorised, validated and documented), or, for a package of resource modules, ``RESOURCES``
and ``blueprint()``: the app factory then builds the blueprint and adds each resource
module's ``routes`` (:class:`api.routing.Routes`) to it (:func:`api.app.assemble`). A
blueprint module never imports another one; what two share lives outside
``api/blueprints`` (``api.csc_common``, ``api.delivery_common``).
"""

BLUEPRINT_MODULES = [
    "api.blueprints.health",
    "api.blueprints.docs",
    "api.blueprints.auth",
    "api.blueprints.quotas",
    "api.blueprints.audit",
    "api.blueprints.delivery",
    "api.blueprints.certificates",
    "api.blueprints.pki_public",
    "api.blueprints.csc",
    "api.blueprints.csc.v1",
    "api.blueprints.oauth2",
    "api.blueprints.verify",
    "api.web",
    "api.web.link",
]
