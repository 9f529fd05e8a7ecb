"""One blueprint per domain. ``api.app.create_app`` registers every module listed here.

A module exports ``bp`` (an :class:`api.routing.ApiBlueprint`, so that its operations are
authorised, validated and documented) and may export ``setup(app, runtime)``.
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
