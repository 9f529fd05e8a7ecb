"""``tawqi serve``: the application on Flask's development server (threaded, keep-alive).

For production run ``gunicorn 'api.wsgi:app'`` behind a load balancer; OCSP answers are
pre-signed, so any number of processes (or a CDN, see ``tawqi ocsp export``) can serve them.
"""

from __future__ import annotations

import click
from werkzeug.serving import WSGIRequestHandler, run_simple

from api.app import create_app
from api.cli.common import LazyRuntime


class _KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep connections open between requests


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.pass_obj
def serve(lazy: LazyRuntime, host: str, port: int) -> None:
    """Serve the API and the public PKI endpoints (/ocsp, /tsa, /crl, /ca)."""
    runtime = lazy.get()
    app = create_app(rt=runtime)
    click.echo(f"Tawqi on http://{host}:{port} (public URL in certificates: "
               f"{runtime.settings.public_url})")
    run_simple(host, port, app, threaded=True, use_reloader=False,
               request_handler=_KeepAliveHandler)


COMMANDS = [serve]
