"""Authentication and accounts: login, the caller's own account, users and API keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from flask import url_for
from sqlalchemy.orm import Session

from api import accounts, ratelimit
from api.models import ApiKey, User
from api.routing import ApiBlueprint, Call, client_address
from api.schema import PageQuery, make_page, page_of, rule
from api.wiring.flaskapp import wiring
from core.audit import record

bp = ApiBlueprint("auth", __name__, url_prefix="/v1", tag="Accounts",
                  description="Login, the caller's account, users and machine API keys.")

UserRole = Literal["dgcl_admin", "operator", "contact", "holder"]
PROVINCE = r"^[0-9]{2}\.[0-9]{3}$"


@dataclass(frozen=True)
class LoginIn:
    username: str = field(metadata=rule(min_length=1, max_length=64))
    password: str = field(metadata=rule(min_length=1, max_length=1024, write_only=True))
    totp_code: str | None = field(default=None, metadata=rule(
        min_length=1, max_length=32, write_only=True,
        description="The second factor of an account that has one (the roles of "
                    "TAWQI_TOTP_REQUIRED_ROLES): the authenticator application's current "
                    "6-digit code, or one unused recovery code."))


@dataclass(frozen=True)
class TokenOut:
    """A bearer token, shown once: send it as ``Authorization: Bearer <token>``."""

    token: str
    token_type: Literal["Bearer"]
    expires_at: datetime
    role: UserRole


@dataclass(frozen=True)
class UserOut:
    id: int
    username: str
    display_name: str
    role: UserRole
    province_code: str | None
    holder_id: int | None
    active: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class MeOut:
    """The calling principal: a user, or a machine client (kind ``apikey``)."""

    kind: Literal["user", "apikey"]
    id: int
    name: str
    role: Literal["dgcl_admin", "operator", "contact", "holder", "platform"]
    province_code: str | None
    holder_id: int | None


@dataclass(frozen=True)
class PasswordChangeIn:
    current_password: str = field(metadata=rule(min_length=1, max_length=1024,
                                                write_only=True))
    new_password: str = field(metadata=rule(min_length=accounts.MIN_PASSWORD,
                                            max_length=accounts.MAX_PASSWORD,
                                            write_only=True))


@dataclass(frozen=True)
class NewUserIn:
    username: str = field(metadata=rule(pattern=accounts.USERNAME_PATTERN, min_length=3,
                                        max_length=64))
    display_name: str = field(metadata=rule(min_length=1, max_length=200))
    role: UserRole
    password: str = field(metadata=rule(min_length=accounts.MIN_PASSWORD,
                                        max_length=accounts.MAX_PASSWORD, write_only=True))
    province_code: str | None = field(default=None, metadata=rule(
        pattern=PROVINCE, description="Required for a provincial contact."))
    holder_id: int | None = field(default=None, metadata=rule(
        minimum=1, maximum=2_147_483_647, description="The delivery holder of a holder account."))


@dataclass(frozen=True)
class UserQuery(PageQuery):
    role: UserRole | None = None
    province_code: str | None = field(default=None, metadata=rule(pattern=PROVINCE))
    active: bool | None = None


@dataclass(frozen=True)
class UserActiveIn:
    active: bool


@dataclass(frozen=True)
class HolderLinkIn:
    holder_id: int = field(metadata=rule(minimum=1, maximum=2_147_483_647))


@dataclass(frozen=True)
class NewApiKeyIn:
    name: str = field(metadata=rule(min_length=1, max_length=200,
                                    description="Who uses the key, e.g. 'permits platform'."))


@dataclass(frozen=True)
class ApiKeyOut:
    id: int
    prefix: str
    name: str
    role: Literal["platform"]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewApiKeyOut:
    """The key itself appears here once and is never retrievable again."""

    key: str
    api_key: ApiKeyOut


@dataclass(frozen=True)
class ApiKeyQuery(PageQuery):
    include_revoked: bool = False


def user_out(user: User) -> UserOut:
    return UserOut(user.id, user.username, user.display_name, user.role,  # type: ignore[arg-type]
                   user.province_code, user.holder_id, user.active, user.created_at,
                   user.last_login_at)


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(key.id, key.prefix, key.name, "platform", key.created_at,
                     key.created_by, key.revoked_at)


# --------------------------------------------------------------------------- session


@bp.operation("POST", "/auth/login", action=None, body=LoginIn, response=TokenOut,
              rate_limit="auth", summary="Exchange a user name and password (and the "
              "second-factor code of an account that has one) for a token",
              errors=(401, 403))
def login(call: Call, body: LoginIn) -> TokenOut:
    """Failed logins are limited per client address (``TAWQI_RATE_LIMIT_AUTH``) and a user
    name that keeps failing backs off exponentially, except for addresses that have not
    failed on it (``TAWQI_LOGIN_FREE_FAILURES``, ``TAWQI_LOGIN_BACKOFF_MAX_SECONDS``); a
    successful login does not count. The token lasts ``TAWQI_SESSION_TTL_MINUTES``; only its
    hash is stored.

    An account with a TOTP second factor also sends ``totp_code``: without it the answer is
    401 ``second-factor-required``, with a wrong or replayed code 401
    ``second-factor-failed``; both count as failed logins. An account of a role in
    ``TAWQI_TOTP_REQUIRED_ROLES`` that has not enrolled yet gets 403
    ``second-factor-not-enrolled``: it enrols on the web sign-in page first."""
    client = client_address()
    username = body.username.strip().lower()[:64]

    def audit_failure(session: Session) -> None:
        record(session, call.clock, actor="anonymous", action="auth.login_failed",
               object_type="username", object_id=username, summary={"client": client})

    call.on_failure(audit_failure)
    required = frozenset(r.strip() for r in call.settings.totp_required_roles.split(",")
                         if r.strip())
    # the token layer is reached only when a code came with the password
    sealer = wiring().sealer_or_none() if body.totp_code else None
    issued = accounts.login(call.session, call.clock, call.passwords, username=body.username,
                            password=body.password,
                            ttl=timedelta(minutes=call.settings.session_ttl_minutes),
                            client=client, totp_code=body.totp_code, sealer=sealer,
                            required_roles=required)
    ratelimit.login_succeeded(call.session, call.clock, username=body.username,
                              address=client, limit=ratelimit.login_policy(call.settings)[0])
    return TokenOut(issued.token, "Bearer", issued.expires_at, issued.user.role)  # type: ignore[arg-type]


@bp.operation("POST", "/auth/logout", action="self.manage", summary="Revoke this token")
def logout(call: Call) -> None:
    accounts.logout(call.session, call.clock, call.user)


@bp.operation("GET", "/me", action="self.read", response=MeOut, summary="Who am I")
def me(call: Call) -> MeOut:
    p = call.user
    return MeOut(p.kind, p.id, p.name, p.role, p.province_code, p.holder_id)  # type: ignore[arg-type]


@bp.operation("POST", "/me/password", action="self.manage", body=PasswordChangeIn,
              rate_limit="auth", summary="Change my password")
def change_password(call: Call, body: PasswordChangeIn) -> None:
    if call.user.kind != "user":
        raise accounts.InvalidAccount("an API key has no password")
    accounts.change_password(call.session, call.clock, call.passwords, call.user.id,
                             current=body.current_password, new=body.new_password,
                             actor=call.actor)


# --------------------------------------------------------------------------- users


@bp.operation("GET", "/users", action="users.read", query=UserQuery,
              response=page_of(UserOut), summary="List user accounts")
def list_users(call: Call, query: UserQuery) -> object:
    users, total = accounts.list_users(call.session, role=query.role,
                                       province_code=query.province_code,
                                       active=query.active, limit=query.limit,
                                       offset=query.offset)
    return make_page(UserOut, [user_out(u) for u in users], total, query.limit, query.offset)


@bp.operation("POST", "/users", action="users.manage", body=NewUserIn, response=UserOut,
              status=201, summary="Create a user account",
              errors=(409,))
def create_user(call: Call, body: NewUserIn) -> UserOut:
    user = accounts.create_user(call.session, call.clock, call.passwords,
                                username=body.username, display_name=body.display_name,
                                role=body.role, password=body.password,
                                province_code=body.province_code, holder_id=body.holder_id,
                                actor=call.actor)
    call.location = url_for("auth.get_user", user_id=user.id)
    return user_out(user)


@bp.operation("GET", "/users/<id:user_id>", action="users.read", response=UserOut,
              summary="One user account")
def get_user(call: Call, user_id: int) -> UserOut:
    return user_out(accounts.get_user(call.session, user_id))


@bp.operation("POST", "/users/<id:user_id>/active", action="users.manage",
              body=UserActiveIn, response=UserOut,
              summary="Disable or re-enable an account (disabling ends its sessions)")
def set_active(call: Call, user_id: int, body: UserActiveIn) -> UserOut:
    return user_out(accounts.set_active(call.session, call.clock, user_id, body.active,
                                        actor=call.actor))


@bp.operation("POST", "/users/<id:user_id>/holder", action="users.manage", body=HolderLinkIn,
              response=UserOut, summary="Link a holder account to its holder record")
def link_holder(call: Call, user_id: int, body: HolderLinkIn) -> UserOut:
    return user_out(accounts.link_holder(call.session, call.clock, user_id, body.holder_id,
                                         actor=call.actor))


# --------------------------------------------------------------------------- API keys


@bp.operation("GET", "/api-keys", action="apikeys.manage", query=ApiKeyQuery,
              response=page_of(ApiKeyOut), summary="List API keys (never the keys themselves)")
def list_keys(call: Call, query: ApiKeyQuery) -> object:
    keys, total = accounts.list_api_keys(call.session, include_revoked=query.include_revoked,
                                         limit=query.limit, offset=query.offset)
    return make_page(ApiKeyOut, [key_out(k) for k in keys], total, query.limit, query.offset)


@bp.operation("POST", "/api-keys", action="apikeys.manage", body=NewApiKeyIn,
              response=NewApiKeyOut, status=201,
              summary="Create an API key for a machine client (shown once)")
def create_key(call: Call, body: NewApiKeyIn) -> NewApiKeyOut:
    issued = accounts.create_api_key(call.session, call.clock, name=body.name,
                                     actor=call.actor)
    return NewApiKeyOut(issued.key, key_out(issued.record))


@bp.operation("DELETE", "/api-keys/<id:key_id>", action="apikeys.manage", response=ApiKeyOut,
              summary="Revoke an API key")
def revoke_key(call: Call, key_id: int) -> ApiKeyOut:
    return key_out(accounts.revoke_api_key(call.session, call.clock, key_id,
                                           actor=call.actor))

