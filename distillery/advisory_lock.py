"""A registration lock that spans machines: a PostgreSQL session-level advisory lock (``register.lock:
postgresql://...``).

Every registration, promotion and rollback of one model name, from any machine that reaches the database,
takes the same 64-bit key (a hash of the model name) with ``pg_try_advisory_lock`` and holds it on one open
connection for the whole register-and-gate step. PostgreSQL releases a session lock when its connection
ends, so a holder killed by SIGKILL frees it at once (the kernel closes the socket); a holder whose machine
vanishes frees it when the server's TCP keepalives give up (about a minute with the settings below). The password comes
from libpq's usual places (``PGPASSWORD``, ``~/.pgpass``), never from params.yaml.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import time
from typing import Iterator

from distillery.errors import ConfigError, EnvironmentFailure, LockTimeout, TransientError
from distillery.tracking import redact_uri

KEY_PREFIX = "distillery.register\n"
# TCP keepalives on both ends of the holder's connection. The server's (set per session through ``options``) are
# the ones that free the lock of a holder whose machine vanished: after idle + interval x count = 60 s, not the
# operating system's default of two hours and more. The client's let a holder notice a vanished server.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
              "options": "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"}
_HOLDER = ("SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
           "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
           "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1")


# what PostgreSQL says when it answers and refuses: a wrong password, role or database (never retried)
REFUSALS = (("password authentication failed", "set PGPASSWORD (or ~/.pgpass) to the role's password"),
            ("no password supplied", "set PGPASSWORD (or ~/.pgpass) to the role's password"),
            ("does not exist", "the role or database in register.lock does not exist on that server: create it "
                               "(README: Running it for a team) or fix the URL"),
            ("no pg_hba.conf entry", "the server's pg_hba.conf admits no such connection: ask its admin"))


class LockUnavailable(TransientError):
    """The lock's PostgreSQL server does not answer (exit code 3, retried by the flow)."""


def lock_key(name: str) -> int:
    """The advisory lock key of model ``name``: the first 8 bytes of a SHA-256, as PostgreSQL's signed bigint."""
    return int.from_bytes(hashlib.sha256((KEY_PREFIX + name).encode()).digest()[:8], "big", signed=True)


def _holder(cursor, key: int) -> str:
    """Who holds ``key``, as far as this role may see (``pg_stat_activity`` hides other roles' details)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    try:
        cursor.execute(_HOLDER, (unsigned >> 32, unsigned & 0xFFFFFFFF))
        row = cursor.fetchone()
    except Exception:
        return "holder unknown"
    if not row:
        return "holder unknown"
    app, addr, since = row
    return f"{app or 'a session'} from {addr or 'a local socket'}, since {since:%H:%M:%S}" if since else \
        f"{app or 'a session'} from {addr or 'a local socket'}"


def _connect(url: str, name: str):
    try:
        import psycopg2
    except ImportError:
        raise EnvironmentFailure("register.lock is a PostgreSQL URL but psycopg2 is not installed; "
                                 "pip install psycopg2-binary (a dependency of Distillery)") from None
    who = f"distillery register {name} pid {os.getpid()} on {socket.gethostname()}"[:63]  # NAMEDATALEN - 1
    try:
        connection = psycopg2.connect(url, application_name=who, connect_timeout=10, **KEEPALIVES)
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        refused = next((why for marker, why in REFUSALS if marker in str(exc)), None)
        if refused:  # the server answered: a setting to fix, not an outage to retry (the role named: the URL's
            from urllib.parse import unquote, urlsplit  # user name, which redaction removes with the password)

            role = unquote(urlsplit(url).username or "")
            of_role = f" of role {role!r}" if role else ""
            raise ConfigError(f"register.lock: PostgreSQL at {redact_uri(url)} refused the connection{of_role} "
                              f"({redact_uri(first)[:160]}): {refused}") from None
        raise LockUnavailable(f"register.lock: PostgreSQL at {redact_uri(url)} is unavailable "
                              f"({redact_uri(first)[:160]}); start it, or set register.lock: file on one machine "
                              "only") from None
    connection.autocommit = True  # a session lock outlives transactions; no transaction is left open
    return connection


@contextlib.contextmanager
def advisory_lock(url: str, name: str, timeout_s: float, poll_s: float = 0.5) -> Iterator[int]:
    """Hold the advisory lock of model ``name`` on the database at ``url``; wait at most ``timeout_s``."""
    key = lock_key(name)
    connection = _connect(url, name)
    import psycopg2  # _connect made sure it is there

    try:
        with connection.cursor() as cursor:
            deadline, waited = time.monotonic() + timeout_s, False
            while True:
                try:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                    if cursor.fetchone()[0]:
                        break
                except psycopg2.Error as exc:
                    raise LockUnavailable(f"register.lock: PostgreSQL at {redact_uri(url)} failed while waiting "
                                          f"for the lock ({type(exc).__name__}); run it again") from None
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"another registration of {name!r} holds the advisory lock {key} on "
                                      f"{redact_uri(url)} ({_holder(cursor, key)}); waited {timeout_s:g}s "
                                      f"(register.lock_timeout_s)")
                if not waited:
                    from distillery.locking import say_waiting

                    waited = say_waiting(name, f"advisory lock {key} on {redact_uri(url)}: {_holder(cursor, key)}",
                                          timeout_s)
                time.sleep(poll_s)
            try:
                yield key
            finally:
                try:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
                    held = bool(cursor.fetchone()[0])
                except psycopg2.Error:
                    held = False
                if not held:  # the connection dropped meanwhile, and PostgreSQL released the lock with it
                    logging.getLogger("distillery").warning(
                        "register.lock: the advisory lock of %r on %s was lost before its release (connection "
                        "dropped); another registration may have run alongside: check `distillery models`",
                        name, redact_uri(url))
    finally:
        with contextlib.suppress(Exception):
            connection.close()
