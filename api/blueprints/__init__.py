"""One blueprint per domain. ``api.app.create_app`` registers every module listed here."""

BLUEPRINT_MODULES = [
    "api.blueprints.health",
]
