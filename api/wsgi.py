"""WSGI entry point for gunicorn: ``gunicorn -c deploy/gunicorn.conf.py api.wsgi:app``.

Each worker builds its own app after the fork, so the PKCS#11 module (loaded lazily on first
use) is initialised in the worker, never inherited from the master.
"""

from api.app import create_app

app = create_app()
