"""What an LDAP session reads for escalation paths: the entries that can bind and the groups
under the directory's base (two searches), and the access rules of the database holding
``accounts_dn`` and of the frontend from ``cn=config`` (one search), turned into
``lockstep.paths.ldap`` facts. A bind DN that may not read ``cn=config`` leaves the rules
unread, which the facts report as not assessed.
"""

from __future__ import annotations

import re
from typing import Any

import ldap3  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import exceptions as ldap_errors  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import results  # type: ignore[import-untyped, unused-ignore]
from ldap3.utils.dn import to_dn  # type: ignore[import-untyped, unused-ignore]

from lockstep.connectors.base import TargetUnreachable
from lockstep.connectors.ldap.directory import (
    GROUPS_FILTER,
    PASSWORD,
    LdapDirectory,
    leaf_uid,
    leaf_value,
)
from lockstep.paths.graph import PathRequest
from lockstep.paths.ldap import LdapEntry, LdapFacts, LdapGroup
from lockstep.paths.ldap_acl import Dn, norm_dn

_DATABASES = "(objectClass=olcDatabaseConfig)"
_CONFIG_ATTRIBUTES = ["olcDatabase", "olcSuffix", "olcAccess", "olcRootDN"]


class LdapPaths(LdapDirectory):
    def read_paths(self, request: PathRequest) -> LdapFacts:
        settings = self._settings
        accounts, groups_dn = norm_dn(settings.accounts_dn), norm_dn(settings.groups_dn)
        base = _common_base(settings.accounts_dn, settings.groups_dn)
        with self._ldap_errors(TargetUnreachable):
            bindable = self._search(base, ldap3.SUBTREE, f"({PASSWORD}=*)", ["objectClass"])
            groups = self._search(base, ldap3.SUBTREE, GROUPS_FILTER, ["member", "cn"])
            rules, root, why = self._config(accounts)
        entries = tuple(_entry(e, accounts) for e in bindable)
        return LdapFacts(
            target=self._target,
            bind_dn=norm_dn(settings.bind_dn),
            entries=entries,
            groups=tuple(_group(g, groups_dn) for g in groups),
            rules=rules,
            root_dn=root,
            unread_because=why,
        )

    def _config(self, accounts: Dn) -> tuple[tuple[str, ...] | None, Dn | None, str]:
        """The olcAccess values that apply to ``accounts`` (its database's, then the
        frontend's) and that database's rootDN; None and why when they cannot be read."""
        try:
            self._conn.search(
                "cn=config", _DATABASES, search_scope=ldap3.LEVEL, attributes=_CONFIG_ATTRIBUTES
            )
        except ldap_errors.LDAPCommunicationError:
            raise  # the target is gone: _ldap_errors makes it unreachable
        except ldap_errors.LDAPException as exc:
            return None, None, f"cn=config could not be searched: {exc}"
        code = int(self._conn.result["result"])
        found = [e for e in self._conn.response or [] if e["type"] == "searchResEntry"]
        if code != results.RESULT_SUCCESS or not found:
            return (
                None,
                None,
                (f"the bind DN may not read cn=config ({self._conn.result['description']})"),
            )
        database, frontend = None, None
        for entry in found:
            attributes = entry["attributes"]
            name = str(_first(attributes.get("olcDatabase")) or "")
            if re.fullmatch(r"(\{-?\d+\})?frontend", name):
                frontend = attributes
            suffixes = [norm_dn(s) for s in attributes.get("olcSuffix", [])]
            if any(accounts[len(accounts) - len(s) :] == s for s in suffixes if s):
                database = attributes
        if database is None:
            return None, None, "cn=config holds no database for accounts_dn"
        values = [*database.get("olcAccess", [])]
        frontend_values = list(frontend.get("olcAccess", [])) if frontend else []
        # The frontend's rules apply after the database's: renumbered to come last.
        offset = len(values)
        values += [_renumbered(v, offset + i) for i, v in enumerate(_ordered(frontend_values))]
        root = _first(database.get("olcRootDN"))
        return tuple(_ordered(values)), norm_dn(root) if root else None, ""


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _index(value: str) -> int:
    match = re.match(r"\{(\d+)\}", value.strip())
    return int(match.group(1)) if match else 0


def _ordered(values: list[str]) -> list[str]:
    return sorted(values, key=_index)


def _renumbered(value: str, index: int) -> str:
    return f"{{{index}}}" + re.sub(r"^\s*\{\d+\}", "", value)


def _common_base(first: str, second: str) -> str:
    a, b = to_dn(first), to_dn(second)
    shared = 0
    while shared < min(len(a), len(b)) and norm_dn(a[-1 - shared]) == norm_dn(b[-1 - shared]):
        shared += 1
    return ",".join(a[len(a) - shared :]) if shared else first


def _entry(found: dict[str, Any], accounts: Dn) -> LdapEntry:
    dn = norm_dn(found["dn"])
    uid = None
    if len(dn) == len(accounts) + 1 and dn[1:] == accounts and dn[0].startswith("uid="):
        uid = leaf_uid(found["dn"])  # the name as the directory spells it, not folded
    classes = found["attributes"].get("objectClass", [])
    return LdapEntry(dn, uid, frozenset(str(c).lower() for c in classes))


def _group(found: dict[str, Any], groups_dn: Dn) -> LdapGroup:
    dn = norm_dn(found["dn"])
    cn = None
    if len(dn) == len(groups_dn) + 1 and dn[1:] == groups_dn and dn[0].startswith("cn="):
        cn = leaf_value(found["dn"], "cn")
    members = frozenset(norm_dn(m) for m in found["attributes"].get("member", []))
    return LdapGroup(dn, cn, members)
