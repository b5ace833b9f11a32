"""Staff accounts for the console (C39): one per person, passwords hashed with argon2id (a
memory-hard function), sessions kept as their token's hash, failed logins slowed, and an audit
log of what staff did.

Slowing: after `FREE_FAILURES` wrong passwords in a row, an account takes a next try only
after a wait that doubles with each further failure (2 s, 4 s, ... up to `MOST_WAIT`); a try
before that is refused without looking at the password, so guessing stays slow whoever
guesses. A right password resets the count.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import Clock
from campaigns.errors import Conflict, InvalidInput
from campaigns.models import AuditEntry, StaffSession, StaffUser

ROLES = ("marketer", "admin")
FREE_FAILURES = 5
MOST_WAIT = timedelta(minutes=15)
IDLE = timedelta(minutes=30)  # a session unused this long is over
LONGEST = timedelta(hours=12)  # and any session after this long
MIN_PASSWORD = 12


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, the library's current recommended parameters


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_user(
    session: AsyncSession, email: str, role: str, password: str, clock: Clock
) -> StaffUser:
    email = email.strip().lower()
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if "@" not in email:
        raise InvalidInput("not an email address", field="email")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD} characters", field="password")
    if await _user_by_email(session, email) is not None:
        raise Conflict(f"there is an account for {email} already")
    user = StaffUser(
        id=uuid.uuid4().hex,
        email=email,
        role=role,
        password_hash=_hasher().hash(password),
        created_at=clock.now(),
    )
    session.add(user)
    await session.flush()
    return user


async def _user_by_email(session: AsyncSession, email: str) -> StaffUser | None:
    found = await session.execute(sa.select(StaffUser).where(StaffUser.email == email))  # type: ignore[arg-type]
    return found.scalar_one_or_none()


@dataclass(frozen=True)
class Login:
    """A login attempt's result: a session's token and CSRF secret, or why not."""

    token: str | None = None
    csrf: str | None = None
    wait_seconds: int = 0  # > 0: too many failures, refused unseen until then

    @property
    def ok(self) -> bool:
        return self.token is not None


def wait_after(failures: int) -> timedelta:
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(MOST_WAIT, timedelta(seconds=2 ** (failures - FREE_FAILURES + 1)))


async def log_in(session: AsyncSession, email: str, password: str, clock: Clock) -> Login:
    """Check a password and open a session. Never says whether the account exists. Never
    commits."""
    now = clock.now()
    user = await _user_by_email(session, email.strip().lower())
    if user is None:
        _hasher().hash(password)  # as long as a wrong password takes
        return Login()
    if user.last_failed_at is not None:
        ready_at = user.last_failed_at + wait_after(user.failed_logins)
        if now < ready_at:
            return Login(wait_seconds=max(1, int((ready_at - now).total_seconds() + 0.999)))
    try:
        _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        user.last_failed_at = now
        await session.flush()
        return Login()
    user.failed_logins = 0
    user.last_failed_at = None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            token_hash=_token_hash(token),
            user_id=user.id,
            csrf=csrf,
            created_at=now,
            last_seen_at=now,
        )
    )
    await audit(session, user.id, "login", clock)
    await session.flush()
    return Login(token, csrf)


@dataclass(frozen=True)
class Staff:
    """Who is logged in, as the console's pages and forms see it."""

    user_id: str
    email: str
    role: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


async def current_staff(session: AsyncSession, token: str, clock: Clock) -> Staff | None:
    """The session's staff member, its idle time renewed; None when it is unknown, idle too
    long or too old (it is then deleted). Never commits."""
    now = clock.now()
    row = await session.get(StaffSession, _token_hash(token))
    if row is None:
        return None
    if now - row.last_seen_at > IDLE or now - row.created_at > LONGEST:
        await session.delete(row)
        return None
    user = await session.get(StaffUser, row.user_id)
    if user is None:
        return None
    row.last_seen_at = now
    return Staff(user.id, user.email, user.role, row.csrf)


async def log_out(session: AsyncSession, token: str, clock: Clock) -> None:
    row = await session.get(StaffSession, _token_hash(token))
    if row is not None:
        await audit(session, row.user_id, "logout", clock)
        await session.delete(row)


async def audit(
    session: AsyncSession,
    user_id: str,
    action: str,
    clock: Clock,
    subject_kind: str | None = None,
    subject_id: str | None = None,
) -> None:
    """One line in the audit log (C39). Never commits."""
    session.add(
        AuditEntry(
            at=clock.now(),
            user_id=user_id,
            action=action,
            subject_kind=subject_kind,
            subject_id=subject_id,
        )
    )


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    who: str  # the account's address, or its id once the account is gone
    action: str
    subject_kind: str | None
    subject_id: str | None


async def audit_log(session: AsyncSession, limit: int = 200) -> list[AuditLine]:
    """The newest entries first."""
    rows = await session.execute(
        sa.select(AuditEntry, StaffUser.email)  # type: ignore[call-overload]
        .outerjoin(StaffUser, StaffUser.id == AuditEntry.user_id)
        .order_by(AuditEntry.id.desc())  # type: ignore[union-attr]
        .limit(limit)
    )
    return [
        AuditLine(e.at, email or e.user_id, e.action, e.subject_kind, e.subject_id)
        for e, email in rows.all()
    ]
