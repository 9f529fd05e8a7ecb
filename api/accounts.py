"""Accounts: users with roles and argon2id passwords, machine API keys, bearer sessions.

A service like the domains' own: it takes a Session, a Clock and plain values, writes an
audit event for every change (``auth.*``) and never touches Flask. Secrets cross it once:
:func:`create_api_key` and :func:`login` return the clear value to show to the caller, and
only hashes are stored. Invariant: no function here logs, stores or returns a stored
secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from api import totp
from api.errors import (
    ApiKeyNotFound,
    BadCredentials,
    InvalidAccount,
    SecondFactorFailed,
    SecondFactorInvalid,
    SecondFactorNotEnrolled,
    SecondFactorRequired,
    TokenInvalid,
    UserExists,
    UserNotFound,
    WeakPassword,
)
from api.models import (
    ROLE_CONTACT,
    ROLE_HOLDER,
    ROLE_PLATFORM,
    USER_ROLES,
    ApiKey,
    AuthSession,
    RecoveryCode,
    User,
)
from core.audit import record
from core.clock import Clock, as_utc
from quotas.models import Province

if TYPE_CHECKING:  # the token layer is imported only by whoever builds a sealer
    from delivery.envelopes import Sealer

SESSION_PREFIX = "tws_"
#: How long a password-checked login waits for its second factor, and how many codes it
#: may try.
SECOND_FACTOR_TTL = timedelta(minutes=5)
SECOND_FACTOR_ATTEMPTS = 5
RECOVERY_CODES = 10
KEY_PREFIX = "twk_"
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (by role) or a machine client (role ``platform``).

    ``province_code`` is set for contacts, ``holder_id`` for holders; ``key`` is a stable
    string naming the principal (``user:7``, ``apikey:3``) for idempotency and rate limits.
    """

    kind: str  # "user" | "apikey"
    id: int
    name: str
    role: str
    province_code: str | None = None
    holder_id: int | None = None
    session_id: int | None = None
    second_factor: bool = False  # a user with TOTP enabled

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"{self.kind}:{self.name}"


class Passwords:
    """argon2id with explicit costs (settings), and a constant-time refusal for unknown
    users so that response times do not reveal which user names exist."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                      parallelism=1)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD} characters")
    if username.lower() in password.lower():
        raise WeakPassword("a password must not contain the user name")
    if len(set(password)) < 5:
        raise WeakPassword("a password needs more than four distinct characters")


# --------------------------------------------------------------------------- users


def create_user(session: Session, clock: Clock, passwords: Passwords, *, username: str,
                display_name: str, role: str, password: str,
                province_code: str | None = None, holder_id: int | None = None,
                actor: str) -> User:
    username = username.strip().lower()
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise InvalidAccount("a user name is 3 to 64 lowercase letters, digits, '.', '_' "
                             "or '-', starting with a letter or digit")
    if role not in USER_ROLES:
        raise InvalidAccount(f"unknown role {role!r}", role=role)
    if not display_name.strip():
        raise InvalidAccount("a display name is required")
    if role == ROLE_CONTACT:
        if not province_code:
            raise InvalidAccount("a provincial contact needs a province_code")
        if session.get(Province, province_code) is None:
            raise InvalidAccount(f"no prefecture/province {province_code}",
                                 province_code=province_code)
    elif province_code:
        raise InvalidAccount("only a provincial contact has a province_code")
    if role != ROLE_HOLDER and holder_id is not None:
        raise InvalidAccount("only a holder account is linked to a holder")
    check_password(password, username)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserExists(f"user name {username!r} is taken", username=username)
    now = clock.now()
    user = User(username=username, display_name=display_name.strip(), role=role,
                province_code=province_code, holder_id=holder_id,
                password_hash=passwords.hash(password), active=True, created_at=now,
                updated_at=now)
    session.add(user)
    session.flush()
    record(session, clock, actor=actor, action="auth.user.created", object_type="user",
           object_id=user.id, summary={"username": username, "role": role,
                                       "province": province_code, "holder": holder_id})
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"no user {user_id}", user_id=user_id)
    return user


def list_users(session: Session, *, role: str | None = None, province_code: str | None = None,
               active: bool | None = None, limit: int = 50,
               offset: int = 0) -> tuple[list[User], int]:
    query = select(User)
    if role:
        query = query.where(User.role == role)
    if province_code:
        query = query.where(User.province_code == province_code)
    if active is not None:
        query = query.where(User.active == active)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    users = list(session.scalars(query.order_by(User.id).limit(limit).offset(offset)))
    return users, int(total)


def set_active(session: Session, clock: Clock, user_id: int, active: bool, *,
               actor: str) -> User:
    """Disable (or re-enable) an account; disabling ends its sessions."""
    user = get_user(session, user_id)
    if user.active == active:
        return user
    now = clock.now()
    user.active = active
    user.updated_at = now
    if not active:
        for live in session.scalars(select(AuthSession).where(
                AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))):
            live.revoked_at = now
    session.flush()
    record(session, clock, actor=actor,
           action="auth.user.enabled" if active else "auth.user.disabled",
           object_type="user", object_id=user.id, summary={"username": user.username})
    return user


def link_holder(session: Session, clock: Clock, user_id: int, holder_id: int, *,
                actor: str) -> User:
    user = get_user(session, user_id)
    if user.role != ROLE_HOLDER:
        raise InvalidAccount("only a holder account is linked to a holder")
    user.holder_id = holder_id
    user.updated_at = clock.now()
    session.flush()
    record(session, clock, actor=actor, action="auth.user.holder_linked", object_type="user",
           object_id=user.id, summary={"holder": holder_id})
    return user


def change_password(session: Session, clock: Clock, passwords: Passwords, user_id: int, *,
                    current: str, new: str, actor: str) -> None:
    user = get_user(session, user_id)
    if not passwords.verify(user.password_hash, current):
        raise BadCredentials("the current password is wrong")
    check_password(new, user.username)
    user.password_hash = passwords.hash(new)
    user.updated_at = clock.now()
    session.flush()
    record(session, clock, actor=actor, action="auth.user.password_changed",
           object_type="user", object_id=user.id, summary={})


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once
    expires_at: datetime
    user: User
    pending: bool = False  # only the second-factor form accepts it


def login(session: Session, clock: Clock, passwords: Passwords, *, username: str,
          password: str, ttl: timedelta, client: str,
          second_factor_step: bool = False, totp_code: str | None = None,
          sealer: Sealer | None = None,
          required_roles: frozenset[str] = frozenset()) -> IssuedToken:
    """Check a password and issue a bearer token. Failures are audited by the caller in
    its own transaction (this one rolls back).

    An account with a second factor gets, when the caller can ask for it
    (``second_factor_step``, the web form), a *pending* token that opens nothing but
    :func:`complete_second_factor` for ``SECOND_FACTOR_TTL``. Otherwise (the API) the code
    comes with the password: ``totp_code`` (a TOTP code or an unused recovery code, checked
    with ``sealer``); none raises :class:`SecondFactorRequired`, a wrong or replayed one
    :class:`SecondFactorFailed`. Without ``second_factor_step``, an account of one of
    ``required_roles`` that has not enrolled yet is refused
    (:class:`SecondFactorNotEnrolled`): it enrols on the web page first."""
    username = username.strip().lower()
    user = session.scalar(select(User).where(User.username == username))
    ok = passwords.verify(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        raise BadCredentials("wrong user name or password")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    if user.totp_enabled_at is not None:
        if second_factor_step:
            return _issue(session, clock, user, ttl=SECOND_FACTOR_TTL, client=client,
                          via="password", pending=True)
        if totp_code is None or not totp_code.strip():
            raise SecondFactorRequired("this account signs in with a second factor: send "
                                       "the code of the authenticator application in "
                                       "totp_code", field="totp_code")
        via = None if sealer is None else _second_factor(session, clock, sealer, user,
                                                         totp_code)
        if via is None:
            raise SecondFactorFailed("the second-factor code is wrong or was already used",
                                     field="totp_code")
        return _issue(session, clock, user, ttl=ttl, client=client, via=f"password+{via}")
    if not second_factor_step and user.role in required_roles:
        raise SecondFactorNotEnrolled("this account must sign in with a second factor: "
                                      "enrol it on the web sign-in page first")
    return _issue(session, clock, user, ttl=ttl, client=client, via="password")


def _issue(session: Session, clock: Clock, user: User, *, ttl: timedelta, client: str,
           via: str, pending: bool = False) -> IssuedToken:
    now = clock.now()
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    auth = AuthSession(token_hash=_sha256(token), user_id=user.id, created_at=now,
                       expires_at=now + ttl, second_factor_pending=pending, attempts=0)
    session.add(auth)
    session.flush()
    if not pending:
        user.last_login_at = now
        record(session, clock, actor=f"user:{user.username}", action="auth.login",
               object_type="user", object_id=user.id,
               summary={"session": auth.id, "client": client, "via": via})
    return IssuedToken(token, auth.expires_at, user, pending)


def login_holder(session: Session, clock: Clock, passwords: Passwords, *, holder_id: int,
                 display_name: str, ttl: timedelta, client: str) -> IssuedToken:
    """A session for the holder whose sign-in code was just checked
    (:func:`delivery.signin.confirm_code`). A holder without an account gets one, with a
    random password nobody knows (they sign in by code). A disabled account is refused."""
    user = session.scalar(select(User).where(User.role == ROLE_HOLDER,
                                             User.holder_id == holder_id)
                          .order_by(User.id).limit(1))
    if user is None:
        now = clock.now()
        user = User(username=f"holder-{holder_id}", display_name=display_name.strip()[:200]
                    or f"holder {holder_id}", role=ROLE_HOLDER, holder_id=holder_id,
                    password_hash=passwords.hash(secrets.token_urlsafe(32)), active=True,
                    created_at=now, updated_at=now)
        session.add(user)
        session.flush()
        record(session, clock, actor="system", action="auth.user.created",
               object_type="user", object_id=user.id,
               summary={"username": user.username, "role": ROLE_HOLDER,
                        "holder": holder_id, "via": "signin-code"})
    if not user.active:
        raise BadCredentials("this account is disabled")
    return _issue(session, clock, user, ttl=ttl, client=client, via="signin-code")


def logout(session: Session, clock: Clock, principal: Principal) -> None:
    if principal.session_id is None:
        return
    auth = session.get(AuthSession, principal.session_id)
    if auth is not None and auth.revoked_at is None:
        auth.revoked_at = clock.now()
        session.flush()
        record(session, clock, actor=principal.actor, action="auth.logout",
               object_type="user", object_id=principal.id, summary={"session": auth.id})


# Every authenticated request runs one of these: columns, not ORM objects (nothing is
# changed), on a session or a read connection; built once, not at each call.
_SESSION_BY_HASH = select(
    AuthSession.id, AuthSession.revoked_at, AuthSession.expires_at,
    AuthSession.second_factor_pending, User.id, User.username, User.role, User.province_code,
    User.holder_id, User.active, User.totp_enabled_at,
).join(User, User.id == AuthSession.user_id).where(
    AuthSession.token_hash == bindparam("token_hash"))
_API_KEY_BY_PREFIX = select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.secret_hash,
                            ApiKey.revoked_at).where(ApiKey.prefix == bindparam("prefix"))


def authenticate(reader: Session | Connection, clock: Clock, bearer: str) -> Principal:
    """The principal a bearer token or API key stands for, or :class:`TokenInvalid`.
    ``reader``: the caller's session, or a read connection (:func:`core.db.reading`)."""
    now = as_utc(clock.now())
    if bearer.startswith(SESSION_PREFIX):
        found = reader.execute(_SESSION_BY_HASH, {"token_hash": _sha256(bearer)}).first()
        if found is None:
            raise TokenInvalid("the bearer token is unknown, expired or revoked")
        (auth_id, revoked_at, expires_at, pending, user_id, username, role, province_code,
         holder_id, active, totp_enabled_at) = found
        if revoked_at is not None or as_utc(expires_at) <= now or pending:
            raise TokenInvalid("the bearer token is unknown, expired or revoked")
        if not active:
            raise TokenInvalid("the account is disabled")
        return Principal("user", user_id, username, role, province_code, holder_id, auth_id,
                         totp_enabled_at is not None)
    if bearer.startswith(KEY_PREFIX):
        prefix, _, secret = bearer[len(KEY_PREFIX):].partition("_")
        key = reader.execute(_API_KEY_BY_PREFIX, {"prefix": prefix}).first() \
            if secret else None
        if key is None or key.revoked_at is not None or \
                not hmac.compare_digest(key.secret_hash, _sha256(secret)):
            raise TokenInvalid("the API key is unknown or revoked")
        return Principal("apikey", key.id, key.name, key.role)
    raise TokenInvalid("the Authorization header carries no Tawqi token or API key")


# --------------------------------------------------------------------------- API keys


def api_client(session: Session, client_id: str) -> Principal | None:
    """The machine client whose API key starts ``twk_<client_id>_`` (OAuth's public
    ``client_id``), unless revoked."""
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 16:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == client_id))
    if key is None or key.revoked_at is not None:
        return None
    return Principal("apikey", key.id, key.name, key.role)


@dataclass(frozen=True)
class IssuedKey:
    key: str  # shown once
    record: ApiKey


def create_api_key(session: Session, clock: Clock, *, name: str, actor: str) -> IssuedKey:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidAccount("an API key needs a name of 1 to 200 characters")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(prefix=prefix, secret_hash=_sha256(secret), name=name, role=ROLE_PLATFORM,
                 created_at=clock.now(), created_by=actor)
    session.add(key)
    session.flush()
    record(session, clock, actor=actor, action="auth.apikey.created", object_type="api_key",
           object_id=key.id, summary={"name": name, "prefix": prefix, "role": key.role})
    return IssuedKey(f"{KEY_PREFIX}{prefix}_{secret}", key)


def list_api_keys(session: Session, *, include_revoked: bool = False, limit: int = 50,
                  offset: int = 0) -> tuple[list[ApiKey], int]:
    query = select(ApiKey)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    return list(session.scalars(query.order_by(ApiKey.id).limit(limit).offset(offset))), \
        int(total)


def get_api_key(session: Session, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound(f"no API key {key_id}", key_id=key_id)
    return key


def revoke_api_key(session: Session, clock: Clock, key_id: int, *, actor: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound(f"no API key {key_id}", key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        session.flush()
        record(session, clock, actor=actor, action="auth.apikey.revoked",
               object_type="api_key", object_id=key.id, summary={"prefix": key.prefix})
    return key


# --------------------------------------------------------------------------- second factor


def _aad(user: User) -> bytes:
    return f"tawqi-totp:{user.id}".encode()


@dataclass(frozen=True)
class Enrolment:
    """Shown once on the enrolment page: the secret to type or scan."""

    secret_base32: str
    uri: str


def start_totp(session: Session, clock: Clock, sealer: Sealer, user_id: int, *,
               actor: str = "") -> Enrolment:
    """A new secret, sealed on the token layer; it protects logins only once
    :func:`confirm_totp` saw a first code from it. Not for an account that has one.
    ``actor`` defaults to the user (who enrols themselves); the audit event names no
    secret."""
    user = get_user(session, user_id)
    if user.totp_enabled_at is not None:
        raise InvalidAccount("this account already has a second factor")
    secret = totp.new_secret()
    user.totp_sealed = sealer.seal(secret, _aad(user))
    user.totp_last_step = None
    user.updated_at = clock.now()
    session.flush()
    record(session, clock, actor=actor or f"user:{user.username}",
           action="auth.user.second_factor_started", object_type="user", object_id=user.id,
           summary={"username": user.username})
    return Enrolment(totp.to_base32(secret), totp.uri(secret, user.username))


def pending_enrolment(session: Session, sealer: Sealer, user_id: int) -> Enrolment | None:
    """The secret being enrolled (to show it again after a wrong first code)."""
    user = get_user(session, user_id)
    if user.totp_sealed is None or user.totp_enabled_at is not None:
        return None
    secret = sealer.open(user.totp_sealed, _aad(user))
    return Enrolment(totp.to_base32(secret), totp.uri(secret, user.username))


def _check_totp(sealer: Sealer, clock: Clock, user: User, code: str) -> bool:
    if user.totp_sealed is None:
        return False
    secret = sealer.open(user.totp_sealed, _aad(user))
    step = totp.match(secret, code, clock.now(), user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


def confirm_totp(session: Session, clock: Clock, sealer: Sealer, user_id: int, code: str, *,
                 actor: str) -> list[str]:
    """Enable the second factor with a first code; return the recovery codes (in clear,
    this once: only their hashes are kept)."""
    user = get_user(session, user_id)
    if user.totp_enabled_at is not None or user.totp_sealed is None:
        raise InvalidAccount("start the enrolment first")
    if not _check_totp(sealer, clock, user, code):
        raise SecondFactorInvalid("this code does not match: check the clock of the "
                                  "device and try the next code", field="code")
    now = clock.now()
    user.totp_enabled_at = now
    user.updated_at = now
    codes = _new_recovery_codes(session, clock, user)
    record(session, clock, actor=actor, action="auth.user.second_factor_enabled",
           object_type="user", object_id=user.id, summary={"recovery_codes": len(codes)})
    return codes


def _new_recovery_codes(session: Session, clock: Clock, user: User) -> list[str]:
    now = clock.now()
    for old in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                           RecoveryCode.used_at.is_(None))):
        old.used_at = now
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = totp.to_base32(secrets.token_bytes(10)).lower()  # 80 bits, 16 characters
        code = f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:]}"
        session.add(RecoveryCode(user_id=user.id, code_hash=_sha256(_recovery_key(code)),
                                 created_at=now))
        codes.append(code)
    session.flush()
    return codes


def _recovery_key(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def reset_second_factor(session: Session, clock: Clock, user_id: int, *,
                        actor: str) -> User:
    """An administrator removes a user's second factor (lost device): the user enrols
    again at the next login. Ends the user's sessions."""
    user = get_user(session, user_id)
    now = clock.now()
    user.totp_sealed = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    user.updated_at = now
    for code in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                            RecoveryCode.used_at.is_(None))):
        code.used_at = now
    for live in session.scalars(select(AuthSession).where(
            AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))):
        live.revoked_at = now
    session.flush()
    record(session, clock, actor=actor, action="auth.user.second_factor_reset",
           object_type="user", object_id=user.id, summary={"username": user.username})
    return user


def pending_user(session: Session, clock: Clock, token: str) -> User | None:
    """The user a pending (password-checked) token stands for, if still open."""
    auth = _pending(session, clock, token)
    return None if auth is None else session.get(User, auth.user_id)


def _pending(session: Session, clock: Clock, token: str) -> AuthSession | None:
    if not token.startswith(SESSION_PREFIX):
        return None
    auth = session.scalar(select(AuthSession).where(AuthSession.token_hash == _sha256(token))
                          .with_for_update())
    if auth is None or not auth.second_factor_pending or auth.revoked_at is not None or \
            as_utc(auth.expires_at) <= as_utc(clock.now()):
        return None
    return auth


def _second_factor(session: Session, clock: Clock, sealer: Sealer, user: User,
                   code: str) -> str | None:
    """How ``code`` proves the second factor (``totp`` or ``recovery-code``, which is then
    spent), or None. A TOTP step is never accepted twice."""
    if _check_totp(sealer, clock, user, code):
        return "totp"
    if len(_recovery_key(code)) == 16:
        found = session.scalar(select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _sha256(_recovery_key(code)),
            RecoveryCode.used_at.is_(None)))
        if found is not None:
            found.used_at = clock.now()
            return "recovery-code"
    return None


def complete_second_factor(session: Session, clock: Clock, sealer: Sealer, *, token: str,
                           code: str, ttl: timedelta, client: str) -> IssuedToken | None:
    """Trade a pending token and a TOTP code (or an unused recovery code) for a session.

    Returns None on a wrong code, having counted the attempt: commit it (after
    ``SECOND_FACTOR_ATTEMPTS`` the pending token is revoked and the password must be
    given again). A code is never accepted twice (the last step is kept)."""
    auth = _pending(session, clock, token)
    if auth is None:
        return None
    user = session.get(User, auth.user_id)
    now = clock.now()
    if user is None or not user.active:
        auth.revoked_at = now
        return None
    via = _second_factor(session, clock, sealer, user, code)
    auth.attempts += 1
    if via is None:
        if auth.attempts >= SECOND_FACTOR_ATTEMPTS:
            auth.revoked_at = now
        session.flush()
        record(session, clock, actor=f"user:{user.username}",
               action="auth.second_factor_failed", object_type="user", object_id=user.id,
               summary={"client": client, "attempts": auth.attempts})
        return None
    auth.revoked_at = now
    session.flush()
    return _issue(session, clock, user, ttl=ttl, client=client, via=f"password+{via}")
