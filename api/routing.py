"""Declared operations: one decorator gives a view its schemas, its authorisation, its
limits and its OpenAPI entry.

A blueprint is an :class:`ApiBlueprint`; each view is declared with
:meth:`ApiBlueprint.operation`::

    bp = ApiBlueprint("quotas", __name__, url_prefix="/v1/quotas", tag="Quotas")

    @bp.operation("GET", "/<entity>", action="quotas.read", query=YearQuery,
                  response=QuotaOut, summary="An entity's quota for a year")
    def show(call: Call, entity: str, query: YearQuery) -> QuotaOut:
        ...
        call.authorize(Scope(province_code=allot.province_code))
        return QuotaOut(...)

The wrapper authenticates the bearer token or API key (401) and refuses a role the action
does not name (403) before it reads anything else of the request; then it checks the
Idempotency-Key header, parses the query string and the JSON body into their dataclasses
(400/415/422; JSON nested deeper than ``MAX_JSON_DEPTH`` is a 400), counts rate-limited
attempts, opens one unit of work, replays or stores an Idempotency-Key (serialising
concurrent requests with the same key), calls the view, and serialises what it returns with
the declared status. Authorisation on the objects the body names is the view's, through
:meth:`Call.authorize`. A view receives
``call`` (the principal, the session, the clock, the runtime) and keyword arguments: the
path parameters, ``query`` and ``body``.

Fail closed: when the action's rule for the caller's role is scoped (a contact's province,
a holder's own records, what a holder authorised), the view must call
:meth:`Call.authorize` or :meth:`Call.list_scope`; if it returns without doing so the work
is rolled back and the caller gets a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from flask import Blueprint, Flask, Response, current_app, request
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.routing import BaseConverter, IntegerConverter, ValidationError

from api import accounts, idempotency, policy, ratelimit
from api.accounts import Passwords, Principal
from api.errors import IdempotencyKeyRequired, JsonTooDeep, MalformedRequest, TokenInvalid
from api.runtime import Runtime
from api.schema import ValidationFailed, dump, load, load_query
from api.wiring.flaskapp import runtime
from core.audit import record
from core.clock import Clock
from core.config import Settings
from core.errors import TawqiError, Unauthenticated

log = logging.getLogger("tawqi.api")

JSON = "application/json"
RateKind = Literal["auth", "pin", "otp"]
# Deepest nesting of arrays and objects accepted in a JSON body (none of ours needs 5).
MAX_JSON_DEPTH = 32


@dataclass
class Operation:
    """One HTTP operation as declared; the OpenAPI document is built from these."""

    method: str
    rule: str
    endpoint: str
    view: Callable[..., Any]
    action: str | None  # None: public, no authentication
    summary: str
    description: str
    tag: str
    query: type | None = None
    body: type | None = None
    response: type | None = None
    status: int = 200
    idempotency: Literal["none", "optional", "required"] = "none"
    rate_limit: RateKind | None = None
    # What the limit protects, from the view's arguments (e.g. ``cred:<id>``): the bucket
    # ``<kind>:<subject>`` is shared by every caller reaching that credential or holder.
    rate_subject: Callable[[dict[str, Any]], str] | None = None
    # For views that return a ready Response (files, CRLs): {media type: JSON Schema}.
    produces: dict[str, dict[str, Any]] | None = None
    # Bodies other than JSON (e.g. application/pdf uploads): {media type: JSON Schema}.
    consumes: dict[str, dict[str, Any]] | None = None
    errors: tuple[int, ...] = ()
    blueprint: str = ""
    deprecated: bool = False
    operation_id: str = ""
    # False: the view runs its services' own short transactions (PIN checks on SQLite must
    # not hold the write lock); ``call.session`` is then unavailable. An Idempotency-Key is
    # then looked up and stored in short transactions of their own (see _dispatch_outside).
    transactional: bool = True
    # Run before the unit of work opens (e.g. load the CA keys, which reads the database in
    # a transaction of its own: on SQLite it must not wait for the request's write lock).
    prepare: Callable[[], Any] | None = None


class ApiBlueprint(Blueprint):
    """A Flask blueprint whose views are declared operations."""

    def __init__(self, name: str, import_name: str, *, url_prefix: str = "",
                 tag: str = "", description: str = "") -> None:
        super().__init__(name, import_name, url_prefix=url_prefix or None)
        self.tag = tag or name.capitalize()
        self.tag_description = description
        self.operations: list[Operation] = []

    def operation(self, method: str, rule: str, *, action: str | None, summary: str,
                  description: str = "", query: type | None = None, body: type | None = None,
                  response: type | None = None, status: int = 200,
                  idempotency: Literal["none", "optional", "required"] = "none",
                  rate_limit: RateKind | None = None,
                  rate_subject: Callable[[dict[str, Any]], str] | None = None,
                  produces: dict[str, dict[str, Any]] | None = None,
                  consumes: dict[str, dict[str, Any]] | None = None,
                  errors: tuple[int, ...] = (), tag: str = "",
                  deprecated: bool = False, transactional: bool = True,
                  prepare: Callable[[], Any] | None = None) -> Callable[[Callable[..., Any]],
                                                        Callable[..., Any]]:
        if action is not None:
            policy.reach("platform", action)  # KeyError at import time for a typo
        if rate_subject is not None and rate_limit is None:
            raise TypeError("rate_subject needs rate_limit")
        if action is None and rate_limit not in (None, "auth"):
            raise TypeError("a public operation's only limit is the login's (auth)")
        method = method.upper()

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            op = Operation(method=method, rule=rule, endpoint=view.__name__, view=view,
                           action=action, summary=summary,
                           description=description or (view.__doc__ or "").strip(),
                           tag=tag or self.tag, query=query, body=body, response=response,
                           status=status, idempotency=idempotency, rate_limit=rate_limit,
                           rate_subject=rate_subject,
                           produces=produces, consumes=consumes, errors=errors,
                           blueprint=self.name, deprecated=deprecated,
                           operation_id=f"{self.name}.{view.__name__}",
                           transactional=transactional, prepare=prepare)
            self.operations.append(op)

            def endpoint(**path: Any) -> Response:
                return _dispatch(op, path)

            endpoint.__name__ = view.__name__
            endpoint.__doc__ = view.__doc__
            self.add_url_rule(rule, view.__name__, endpoint, methods=[method])
            return view

        return decorate



class Routes:
    """Operations declared in one module and added by the app factory to a blueprint it is
    given, so that a module registers nothing on another module's blueprint by being
    imported: ``routes = Routes()``, ``@routes.operation(...)`` (the arguments of
    :meth:`ApiBlueprint.operation`), then ``routes.register(bp)``."""

    def __init__(self) -> None:
        self._declared: list[tuple[str, str, dict[str, Any], Callable[..., Any]]] = []

    def operation(self, method: str, rule: str, **options: Any
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def declare(view: Callable[..., Any]) -> Callable[..., Any]:
            self._declared.append((method, rule, options, view))
            return view

        return declare

    @property
    def endpoints(self) -> list[str]:
        """The declared views' names, in order (their endpoints once registered)."""
        return [view.__name__ for _method, _rule, _options, view in self._declared]

    def register(self, bp: ApiBlueprint) -> None:
        """Add every declared operation to ``bp``, in the order declared."""
        for method, rule, options, view in self._declared:
            bp.operation(method, rule, **options)(view)


@dataclass
class Call:
    """What a view gets besides its parsed arguments."""

    runtime: Runtime
    _session: Session | None
    principal: Principal | None
    action: str | None
    location: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    _scoped: bool = False
    _on_failure: list[Callable[[Session], None]] = field(default_factory=list)

    @property
    def session(self) -> Session:
        if self._session is None:
            raise TypeError("a non-transactional operation has no session")
        return self._session

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        return self.principal.actor if self.principal else "anonymous"

    @property
    def user(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("authentication required")
        return self.principal

    @property
    def passwords(self) -> Passwords:
        found: Passwords = current_app.extensions["tawqi.passwords"]
        return found

    def authorize(self, scope: policy.Scope, action: str | None = None) -> None:
        """Refuse unless the caller may perform the operation's action (or ``action``)
        on the object described by ``scope``."""
        policy.authorize(self.user, action or self._action(), scope)
        self._scoped = True

    def list_scope(self, action: str | None = None) -> policy.ListScope:
        """The restriction every list under this action must apply for the caller."""
        found = policy.list_scope(self.user, action or self._action())
        self._scoped = True
        return found

    def on_failure(self, callback: Callable[[Session], None]) -> None:
        """Run ``callback`` in a fresh transaction if this call fails (e.g. to audit a
        failed login, which the failed transaction cannot keep)."""
        self._on_failure.append(callback)

    def audit(self, action: str, object_type: str, object_id: str | int,
              summary: dict[str, Any] | None = None) -> None:
        record(self.session, self.clock, actor=self.actor, action=action,
               object_type=object_type, object_id=object_id, summary=summary)

    def _action(self) -> str:
        if self.action is None:
            raise TypeError("a public operation has no action to authorise")
        return self.action

    @property
    def scoped(self) -> bool:
        return self._scoped


class ScopeNotChecked(TawqiError):
    """A view with a scoped rule returned without checking the scope (a programming
    error: the work is rolled back)."""

    type = "internal-error"
    title = "Internal error"
    status = 500


def client_address() -> str:
    return request.remote_addr or "unknown"


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise TokenInvalid("use 'Authorization: Bearer <token or API key>'")
    return value.strip()


def _authenticate(reader: Session | Connection, rt: Runtime, op: Operation
                  ) -> Principal | None:
    if op.action is None:
        return None
    token = _bearer()
    if token is None:
        raise Unauthenticated("this operation needs a bearer token or an API key")
    principal = accounts.authenticate(reader, rt.clock, token)
    policy.check_role(principal, op.action)
    return principal


def _read_json(op: Operation, settings: Settings) -> Any:
    request.max_content_length = settings.max_json_kb * 1024
    mimetype = request.mimetype
    if mimetype != JSON and not (mimetype.startswith("application/") and
                                 mimetype.endswith("+json")):
        raise _UnsupportedMediaType(f"send the body as {JSON}")
    raw = request.get_data(cache=True)
    try:
        value = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:  # the parser's own bound, far deeper than ours
        raise _too_deep() from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest("the body is not valid UTF-8 JSON") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise _too_deep()
    return value


def _too_deep() -> JsonTooDeep:
    return JsonTooDeep(f"arrays and objects may be nested at most {MAX_JSON_DEPTH} deep",
                       max_depth=MAX_JSON_DEPTH)


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), level by level and
    without recursion; stops counting past ``MAX_JSON_DEPTH``."""
    containers = (dict, list)
    level = [value] if isinstance(value, containers) else []
    depth = 0
    while level and depth <= MAX_JSON_DEPTH:
        depth += 1
        below = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, containers):
                    below.append(child)
        level = below
    return depth


class _UnsupportedMediaType(TawqiError):
    type = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


def _rate_limit(rt: Runtime, op: Operation, principal: Principal | None,
                kwargs: dict[str, Any]) -> None:
    """Count this attempt in the buckets of what it protects, in its own transaction.

    Anonymous (the login): failures per address and per user name with backoff, see
    :func:`ratelimit.login_attempt`. Authenticated: the subject's bucket (a credential, a
    holder: shared by every caller) with the kind's limit, and the caller's own bucket:
    ``client:<key>`` with ``TAWQI_RATE_LIMIT_CLIENT`` for a machine client, which serves
    every holder of the platform, or ``<kind>:who:<key>`` with the kind's limit for a person.
    """
    if op.rate_limit is None:
        return
    settings = rt.settings
    kind = op.rate_limit
    if principal is None:
        body = kwargs.get("body")
        limit, backoff = ratelimit.login_policy(settings)
        with rt.unit_of_work() as session:
            ratelimit.login_attempt(session, rt.clock,
                                    username=str(getattr(body, "username", "")),
                                    address=client_address(), limit=limit, backoff=backoff)
        return
    limit = ratelimit.limit_of(settings, kind)
    buckets: list[tuple[str, ratelimit.Limit]] = []
    if op.rate_subject is not None:
        buckets.append((f"{kind}:{op.rate_subject(kwargs)}", limit))
    if principal.kind == "apikey":
        buckets.append((f"client:{principal.key}", ratelimit.limit_of(settings, "client")))
    else:
        buckets.append((f"{kind}:who:{principal.key}", limit))
    with rt.unit_of_work() as session:
        ratelimit.enforce(session, rt.clock, buckets, {
            "auth": "password attempts", "pin": "PIN operations",
            "otp": "one-time-code operations"}[kind])


def _serialise(op: Operation, call: Call, result: Any) -> idempotency.Stored | Response:
    if isinstance(result, Response):
        return result
    if op.response is None:
        return idempotency.Stored(204 if op.status == 200 else op.status, "", call.location)
    body = json.dumps(dump(result), ensure_ascii=False, separators=(",", ":"))
    return idempotency.Stored(op.status, body, call.location)


def _respond(stored: idempotency.Stored, call_headers: dict[str, str] | None = None,
             replayed: bool = False) -> Response:
    response = Response(stored.body or None, status=stored.status,
                        mimetype=JSON if stored.body else None)
    if stored.location:
        response.headers["Location"] = stored.location
    for name, value in (call_headers or {}).items():
        response.headers[name] = value
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _parse(op: Operation, kwargs: dict[str, Any], settings: Settings) -> str | None:
    """Read the request beyond its path (after authentication): the Idempotency-Key, the
    query string and the JSON body. Returns the key."""
    key = request.headers.get(idempotency.HEADER)
    if key is not None and op.idempotency != "none":
        key = idempotency.check_key(key)
    elif op.idempotency == "required":
        raise IdempotencyKeyRequired(f"this operation needs an {idempotency.HEADER} header")
    else:
        key = None
    if op.query is not None:
        kwargs["query"] = load_query(op.query, request.args.to_dict(flat=False))
    elif request.args:
        # Unknown parameters are refused, so a typo never silently widens a list.
        raise ValidationFailed("this operation takes no query parameters",
                               errors=[{"field": k, "message": "is not a known parameter"}
                                       for k in request.args])
    if op.body is not None:
        kwargs["body"] = load(op.body, _read_json(op, settings))
    return key


def _dispatch(op: Operation, path: dict[str, Any]) -> Response:
    rt = runtime()
    settings = rt.settings
    kwargs: dict[str, Any] = dict(path)
    principal: Principal | None = None
    key: str | None = None
    # A plain transactional operation authenticates in its unit of work; the others (and
    # public ones) before it, in a short transaction of their own: the rate-limit bucket
    # is the principal's, and a refused caller never gets as far as loading keys.
    early = op.action is None or op.rate_limit is not None or not op.transactional \
        or op.prepare is not None
    if early:
        if op.action is not None:
            with rt.reading() as connection:
                principal = _authenticate(connection, rt, op)
        key = _parse(op, kwargs, settings)
        _rate_limit(rt, op, principal, kwargs)
        if op.prepare is not None:
            op.prepare()

    ttl = timedelta(hours=settings.idempotency_ttl_hours)
    failures: list[Callable[[Session], None]] = []
    if not op.transactional:
        return _dispatch_outside(rt, op, principal, key, kwargs, ttl)
    req_hash = ""
    try:
        with rt.unit_of_work() as session:
            if not early:
                principal = _authenticate(session, rt, op)
                key = _parse(op, kwargs, settings)
            if key is not None:
                req_hash = idempotency.request_hash(request.method, request.full_path,
                                                    request.get_data(cache=True))
                owner = _owner(principal)
                # Requests with the same key wait here for the one in flight, then replay it.
                idempotency.serialise(session, owner, key)
                stored = idempotency.lookup(session, rt.clock, owner, key, req_hash, ttl)
                if stored is not None:
                    return _respond(stored, replayed=True)
            call = Call(rt, session, principal, op.action)
            failures = call._on_failure
            result = op.view(call, **kwargs)
            _check_scoped(op, call, principal)
            out = _serialise(op, call, result)
            if isinstance(out, Response):
                return out
            if key is not None and 200 <= out.status < 300:
                idempotency.store(session, rt.clock, _owner(principal), key, req_hash, out)
            headers = dict(call.headers)
        return _respond(out, headers)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first: replay it.
        if key is None:
            raise
        with rt.unit_of_work() as session:
            stored = idempotency.lookup(session, rt.clock, _owner(principal), key, req_hash,
                                        ttl)
        if stored is None:
            raise
        return _respond(stored, replayed=True)
    except Exception:
        _run_failure_callbacks(rt, op, failures)
        raise


def _dispatch_outside(rt: Runtime, op: Operation, principal: Principal | None,
                      key: str | None, kwargs: dict[str, Any], ttl: timedelta) -> Response:
    """A view that runs its services' own transactions. With an Idempotency-Key, a stored
    answer is replayed before the view runs (short transaction), and the view's answer is
    stored after it (another one). Two requests with the same key at the same moment may
    both run the view (no lock is held while it runs): such operations must be idempotent
    in the domain too (e.g. a campaign's preparation, which skips what is done); the
    second to finish replays the first's answer."""
    req_hash = ""
    if key is not None:
        req_hash = idempotency.request_hash(request.method, request.full_path,
                                            request.get_data(cache=True))
        with rt.unit_of_work() as session:
            stored = idempotency.lookup(session, rt.clock, _owner(principal), key, req_hash,
                                        ttl)
        if stored is not None:
            return _respond(stored, replayed=True)
    call = Call(rt, None, principal, op.action)
    try:
        result = op.view(call, **kwargs)
    except Exception:
        _run_failure_callbacks(rt, op, call._on_failure)
        raise
    _check_scoped(op, call, principal)
    out = _serialise(op, call, result)
    if isinstance(out, Response):
        return out
    if key is not None and 200 <= out.status < 300:
        try:
            with rt.unit_of_work() as session:
                idempotency.serialise(session, _owner(principal), key)
                stored = idempotency.lookup(session, rt.clock, _owner(principal), key,
                                            req_hash, ttl)
                if stored is not None:  # a request with the same key finished first
                    return _respond(stored, replayed=True)
                idempotency.store(session, rt.clock, _owner(principal), key, req_hash, out)
        except IntegrityError:
            with rt.unit_of_work() as session:
                stored = idempotency.lookup(session, rt.clock, _owner(principal), key,
                                            req_hash, ttl)
            if stored is None:
                raise
            return _respond(stored, replayed=True)
    return _respond(out, dict(call.headers))


def _owner(principal: Principal | None) -> str:
    """Whose Idempotency-Keys these are."""
    return principal.key if principal else f"anon:{client_address()}"


def _check_scoped(op: Operation, call: Call, principal: Principal | None) -> None:
    if op.action is not None and principal is not None and not call.scoped and \
            policy.reach(principal.role, op.action) is not policy.ANY:
        log.error("%s returned without checking the scope of %s for a %s",
                  op.operation_id, op.action, principal.role)
        raise ScopeNotChecked("the service could not complete the request")


def _run_failure_callbacks(rt: Runtime, op: Operation,
                           callbacks: list[Callable[[Session], None]]) -> None:
    for callback in callbacks:
        try:
            with rt.unit_of_work() as session:
                callback(session)
        except Exception:  # never mask the original error
            log.exception("failure callback of %s failed", op.operation_id)


def operations(app: Flask) -> list[tuple[Operation, str]]:
    """Every declared operation of ``app`` with its full URL rule."""
    rules = {r.endpoint: r.rule for r in app.url_map.iter_rules()}
    found = []
    for bp in app.blueprints.values():
        if isinstance(bp, ApiBlueprint):
            for op in bp.operations:
                full = rules.get(f"{bp.name}.{op.endpoint}")
                if full is not None:
                    found.append((op, full))
    return found


class IdConverter(BaseConverter):
    """``<id:name>``: a database id, 1 to 2**31-1 (anything else is a 404, never a 500)."""

    regex = r"[1-9][0-9]{0,9}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > 2_147_483_647:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


class BoundedIntConverter(IntegerConverter):
    """``<int:name>`` bounded to a database integer (0 to 2**31-1), so that an oversized
    number in a path is a 404 rather than a database error."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2_147_483_647)
        super().__init__(map, *args, **kwargs)
