"""What a Redis session observes without changing anything: recent use of each account, and a
token that moves whenever a read would report something different.

Redis keeps no per-user record of successful logins. Use is therefore sampled: ``CLIENT
LIST`` shows every open connection with its user and how long it has been idle (its last
command ran that long ago), and ``ACL LOG`` remembers the latest commands, keys and channels
each user was denied, which also proves the account in use. A workload that connects, works
and disconnects between two samples is not seen; one that keeps a connection (a pool) is. A
failed login (``ACL LOG`` reason ``auth``) is not use of the account and is ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from lockstep.connectors.base import TargetUnreachable, Usage
from lockstep.connectors.redis.acl import RULES_KEY, printable
from lockstep.connectors.redis.admin import RedisAdmin, call, guard, scrub

CLIENT_LIST = "client-list"  # the Usage source of an open connection's last command
ACL_LOG = "acl-log"  # ... of a command, key or channel the user was denied
# More than the server keeps (acllog-max-len, 128 by default) unless raised a lot.
ACL_LOG_DEPTH = 1024


class RedisObserver(RedisAdmin):
    def observe_usage(self) -> list[Usage]:
        pipe = self._client.pipeline(transaction=False)
        call(pipe, "CLIENT", "LIST")
        call(pipe, "ACL", "LOG", str(ACL_LOG_DEPTH))
        with guard("CLIENT LIST and ACL LOG", TargetUnreachable):
            clients, log = pipe.execute()
        # Whole seconds, as Redis counts idleness: the same connection then reads the same
        # time pass after pass instead of creeping forward by the sampling jitter.
        now = datetime.now(UTC).replace(microsecond=0)
        sightings = [*seen_in_clients(str(clients), now), *seen_in_acl_log(_entries(log), now)]
        return latest_use(
            (name, at, source) for name, at, source in sightings if name not in self._excluded
        )

    def change_token(self) -> str:
        """A digest of every user's ACL line and of lockstep's rule records (which choose the
        spelling a read reports), in one round trip. Open connections are left out: they
        come and go all the time and are drift for no rule; the regular pass counts them."""
        pipe = self._client.pipeline(transaction=False)
        call(pipe, "ACL", "LIST")
        call(pipe, "HGETALL", RULES_KEY)
        with guard("ACL LIST and HGETALL", TargetUnreachable):
            lines, records = pipe.execute(raise_on_error=False)
        if isinstance(lines, redis.exceptions.ResponseError):
            raise TargetUnreachable(f"redis ACL LIST: {scrub(lines, None)}")
        if isinstance(records, redis.exceptions.ResponseError):
            # A record key of another type is ignored by reads too; any other error is not.
            if not str(records).startswith("WRONGTYPE"):
                raise TargetUnreachable(f"redis HGETALL {RULES_KEY}: {scrub(records, None)}")
            records = {}
        return state_digest(lines, records, self._excluded)


def state_digest(
    acl_lines: Sequence[str], records: Mapping[str, str], excluded: frozenset[str]
) -> str:
    digest = hashlib.sha256()
    for line in acl_lines:
        if line.split(" ", 2)[1] not in excluded:
            digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    digest.update(b"\0")
    for name, record in sorted(records.items()):
        if name not in excluded:
            digest.update(f"{name}\0{record}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


Sighting = tuple[str, datetime, str]  # (user, when, source)


def seen_in_clients(client_list: str, now: datetime) -> Iterator[Sighting]:
    """Each open connection's user, seen at its last command (``idle`` seconds ago)."""
    for line in client_list.splitlines():
        fields = dict(field.partition("=")[::2] for field in line.split(" "))
        if "user" in fields and fields.get("idle", "").isdigit():
            yield fields["user"], now - timedelta(seconds=int(fields["idle"])), CLIENT_LIST


def seen_in_acl_log(entries: Iterable[Mapping[str, Any]], now: datetime) -> Iterator[Sighting]:
    """Users seen running something they were denied; failed logins are no use."""
    for entry in entries:
        name, age = entry.get("username"), entry.get("age-seconds")
        if not isinstance(name, str) or not isinstance(age, int | float):
            raise TargetUnreachable(
                f"redis ACL LOG: an entry without username or age ({sorted(entry)})"
            )
        if entry.get("reason") != "auth":
            yield name, (now - timedelta(seconds=age)).replace(microsecond=0), ACL_LOG


def latest_use(sightings: Iterable[Sighting]) -> list[Usage]:
    latest: dict[str, tuple[datetime, str]] = {}
    for name, at, source in sightings:
        if name not in latest or at > latest[name][0]:
            latest[name] = (at, source)
    return [
        Usage(account=printable(name), last_used=at, source=source)
        for name, (at, source) in sorted(latest.items())
    ]


def _entries(log: object) -> list[Mapping[str, Any]]:
    if not isinstance(log, list) or not all(isinstance(e, Mapping) for e in log):
        raise TargetUnreachable(f"redis ACL LOG: unexpected reply of type {type(log).__name__}")
    return log
