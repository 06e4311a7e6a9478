"""What an LDAP session observes without changing anything: when each account last bound, and
a token that moves whenever a read would report something different.

Last binds are recorded by the directory itself: OpenLDAP 2.5 keeps ``pwdLastSuccess`` on
each entry when the database has ``olcLastBind: TRUE``, and the older ``lastbind`` overlay
keeps ``authTimestamp``. One search reads both, so either set-up works. Neither is on by
default: without one, no bind is ever recorded and no account shows use. Both record every
successful bind, lockstep's own probes of a new credential included.

The change token is a digest of what a read depends on (each account's name, whether it has a
password, whether it is locked; each group's ``entryCSN``, which moves with its members),
never of the bind times, which move with every workload's bind. Building it lists both
subtrees, so where the database runs syncprov the token is gated by ``contextCSN``, which
moves with every write to the database: while it stands still, the last digest stands, and a
token costs one base-scope search. (On a database that records last binds, binds are writes:
they move ``contextCSN`` and make the next token list the subtrees, but not change.)
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Final

import ldap3  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import results  # type: ignore[import-untyped, unused-ignore]
from ldap3.protocol.formatters.formatters import (  # type: ignore[import-untyped, unused-ignore]
    format_time,
)
from ldap3.utils.dn import to_dn  # type: ignore[import-untyped, unused-ignore]

from lockstep.connectors.base import TargetUnreachable, Usage
from lockstep.connectors.ldap.directory import (
    GROUPS_FILTER,
    LOCK,
    PASSWORD,
    LdapDirectory,
    leaf_uid,
)

# Where each records the last successful bind, in the order preferred on a tie.
LAST_BIND: Final = ("pwdLastSuccess", "authTimestamp")
_CONTEXT_CSN: Final = "contextCSN"
_ENTRY_CSN: Final = "entryCSN"


class LdapObserver(LdapDirectory):
    # The entries whose contextCSN covers accounts_dn and groups_dn, once looked up (empty:
    # none, every token lists the subtrees), and the last token with the CSNs it was built at.
    _csn_sources: tuple[str, ...] | None = None
    _last_token: tuple[tuple[str, ...], str] | None = None

    def observe_usage(self) -> list[Usage]:
        wanted = "".join(f"({attribute}=*)" for attribute in LAST_BIND)
        with self._ldap_errors(TargetUnreachable):
            entries = self._search(
                self._settings.accounts_dn,
                ldap3.LEVEL,
                f"(&(uid=*)(|{wanted}))",
                list(LAST_BIND),
            )
        uses = []
        for entry in entries:
            name = leaf_uid(entry["dn"])
            if name is None or self._is_excluded(name):
                continue
            seen = [
                (self._time(entry["dn"], attribute, value), -rank, attribute)
                for rank, attribute in enumerate(LAST_BIND)
                for value in entry["raw_attributes"].get(attribute, [])
            ]
            if seen:
                at, _, source = max(seen)
                uses.append(Usage(account=name, last_used=at, source=source))
        return uses

    def change_token(self) -> str:
        with self._ldap_errors(TargetUnreachable):
            csns = self._context_csns()
            if csns and self._last_token is not None and self._last_token[0] == csns:
                return self._last_token[1]
            token = self._state_digest()
        self._last_token = (csns, token) if csns else None
        return token

    def _state_digest(self) -> str:
        lines = []
        accounts = self._search(
            self._settings.accounts_dn,
            ldap3.LEVEL,
            "(uid=*)",
            [PASSWORD, LOCK],
            types_only=True,
        )
        for entry in accounts:
            name = leaf_uid(entry["dn"])
            if name is not None and not self._is_excluded(name):
                present = entry["raw_attributes"]
                lines.append(f"account\0{entry['dn']}\0{PASSWORD in present}\0{LOCK in present}")
        groups = self._search(self._settings.groups_dn, ldap3.LEVEL, GROUPS_FILTER, [_ENTRY_CSN])
        for group in groups:
            csn = group["raw_attributes"].get(_ENTRY_CSN)
            if not csn:
                # Without it a change of members would go unseen.
                raise TargetUnreachable(
                    self._say(f"cannot read entryCSN of {group['dn']}: let the bind DN read it")
                )
            lines.append(f"group\0{group['dn']}\0{sorted(csn)}")
        return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()

    def _context_csns(self) -> tuple[str, ...]:
        """The contextCSN values now, or () when they cannot stand for the subtrees."""
        if self._csn_sources is None:
            bases = (self._settings.accounts_dn, self._settings.groups_dn)
            found = [source for base in bases if (source := self._csn_source(base))]
            # Both subtrees must be covered, or a change in the other would go unseen.
            self._csn_sources = tuple(dict.fromkeys(found)) if len(found) == len(bases) else ()
        csns: list[str] = []
        for source in self._csn_sources:
            values = self._base_values(source, _CONTEXT_CSN)
            if not values:
                return ()
            csns.append(f"{source}\0{sorted(values)}")
        return tuple(csns)

    def _csn_source(self, base: str) -> str | None:
        """The nearest entry at or above ``base`` holding contextCSN (the suffix of the
        database that holds ``base``, when it runs syncprov)."""
        parts = to_dn(base)
        for start in range(len(parts)):
            candidate = ",".join(parts[start:])
            if self._base_values(candidate, _CONTEXT_CSN):
                return candidate
        return None

    def _base_values(self, dn: str, attribute: str) -> list[Any]:
        """Values of one attribute of one entry; none when it or the entry cannot be read."""
        self._conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attribute])
        if self._conn.result["result"] != results.RESULT_SUCCESS or not self._conn.response:
            return []
        entry = self._conn.response[0]
        return list(entry.get("raw_attributes", {}).get(attribute, []))

    def _time(self, dn: str, attribute: str, value: bytes) -> datetime:
        parsed = format_time(value)  # the value itself when it is not a GeneralizedTime
        if not isinstance(parsed, datetime) or parsed.tzinfo is None:
            raise TargetUnreachable(self._say(f"{attribute} of {dn} is not a time: {value!r}"))
        return parsed
