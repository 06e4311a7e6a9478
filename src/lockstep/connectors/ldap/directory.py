"""The directory an LDAP session talks to: the target's keys, how DNs are read and compared,
how the admin connection is opened, and the primitives every part of a session builds on
(``LdapDirectory``): complete paged searches and results turned into lockstep's errors.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import ldap3  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import exceptions as ldap_errors  # type: ignore[import-untyped, unused-ignore]
from ldap3.core import results
from ldap3.utils.dn import escape_rdn, parse_dn  # type: ignore[import-untyped, unused-ignore]
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from lockstep.connectors.base import (
    ActionFailed,
    ConnectorError,
    Scope,
    SecretValue,
    TargetUnreachable,
)
from lockstep.secret import Secret, redact

TIMEOUT_S: Final = 5  # seconds; ldap3 packs it into a socket option that takes whole seconds
PAGE_SIZE: Final = 500

PAGED_RESULTS_OID: Final = "1.2.840.113556.1.4.319"
GROUPS_FILTER: Final = "(objectClass=groupOfNames)"
LOCK: Final = "pwdAccountLockedTime"
PASSWORD: Final = "userPassword"  # noqa: S105 - the attribute's name
DEFAULT_ADMIN_GROUPS: Final = ("admins", "administrators")
# The server is there but cannot serve us now: no conclusion may be drawn, as when it is down.
_UNAVAILABLE: Final = frozenset({results.RESULT_BUSY, results.RESULT_UNAVAILABLE})
_HINTS: Final = {
    results.RESULT_SIZE_LIMIT_EXCEEDED: "the directory limits what the bind DN may read; "
    "lift it for that DN (OpenLDAP: olcLimits: dn.exact=BIND_DN size=unlimited)",
}

# A DN compared the way the directory compares it: a tuple of RDNs, each a set of
# (attribute type, folded value).
NormalDn = tuple[frozenset[tuple[str, str]], ...]


# ---------------------------------------------------------------- DNs and names

_DN_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})|\\(.)|([^\\]+)", re.DOTALL)


def _unescape(value: str) -> str:
    """An attribute value from its RFC 4514 string form; hex escapes may spell out the
    bytes of one UTF-8 character, so the value is rebuilt as bytes first."""
    raw = bytearray()
    for hex_pair, escaped, plain in _DN_ESCAPE.findall(value):
        raw += bytes([int(hex_pair, 16)]) if hex_pair else (escaped or plain).encode()
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise ldap_errors.LDAPInvalidDnError(f"value is not UTF-8: {value!r}") from exc


def rdns(dn: str) -> list[list[tuple[str, str]]]:
    """The RDNs of ``dn``, each a list of (lower-case attribute type, unescaped value)."""
    parsed: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for attribute_type, value, separator in parse_dn(dn):
        current.append((str(attribute_type).lower(), _unescape(str(value))))
        if separator != "+":  # "+" joins the AVAs of a multi-valued RDN
            parsed.append(current)
            current = []
    return parsed


def fold(value: str) -> str:
    """What uid, cn, ou and dc values are compared by (caseIgnoreMatch with insignificant
    space handling, RFC 4518): so " Svc " names the same entry as "svc"."""
    return re.sub(" +", " ", value.strip(" ")).casefold()


def normal(parsed: list[list[tuple[str, str]]]) -> NormalDn:
    return tuple(frozenset((kind, fold(value)) for kind, value in rdn) for rdn in parsed)


def normal_dn(dn: str) -> NormalDn:
    return normal(rdns(dn))


# A first RDN "uid=VALUE," that needs no unescaping: most DNs a directory returns.
_PLAIN_UID = re.compile(r"uid=([^,+\\\"#<>;=]+),", re.IGNORECASE)


def leaf_uid(dn: str) -> str | None:
    """``leaf_value(dn, "uid")``, without parsing the whole DN when it need not be: listing
    thousands of entries, parsing their DNs would be most of the cost."""
    plain = _PLAIN_UID.match(dn)
    return plain.group(1) if plain else leaf_value(dn, "uid")


def leaf_value(dn: str, attribute: str) -> str | None:
    """The value of a single-valued RDN of type ``attribute`` (``uid=svc,...`` -> ``svc``)."""
    first = rdns(dn)[0]
    if len(first) == 1 and first[0][0] == attribute:
        return first[0][1]
    return None


def connection(url: str, user: str, password: Secret, ca_file: str | None = None) -> Any:
    """``ca_file``: the CA certificates (PEM) an ``ldaps://`` server's certificate must chain
    to, instead of the system's."""
    server = ldap3.Server(
        url,
        get_info=ldap3.NONE,
        connect_timeout=TIMEOUT_S,
        # ldap3 accepts any certificate by default.
        tls=ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file),
    )
    return ldap3.Connection(
        server,
        user=user,
        password=password.reveal(),
        receive_timeout=TIMEOUT_S,
        # ldap3 would re-bind to whatever server a referral names, with these credentials.
        auto_referrals=False,
        # So that an attribute's presence can be read without its values (see _account).
        return_empty_attributes=False,
        raise_exceptions=False,
    )


# ---------------------------------------------------------------- settings


class LdapSettings(BaseModel):
    """The target keys of ``type: ldap``."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str = Field(description="ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    bind_dn: str = Field(description="The DN lockstep binds as (its admin)")
    bind_password: Annotated[SecretValue, WithJsonSchema({"type": "string", "minLength": 1})] = (
        Field(description="The bind DN's password: ${VAR} or file:PATH")
    )
    accounts_dn: str = Field(description="Where service accounts live (uid=NAME entries)")
    groups_dn: str = Field(description="Where the groupOfNames of group:CN entitlements live")
    ca_file: str | None = Field(
        default=None, description="CA certificates (PEM) for ldaps://, instead of the system's"
    )
    # Members of these groups (cn under groups_dn) administer the directory: never acted on
    # unless an identity declares them.
    admin_groups: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ADMIN_GROUPS),
        description="Groups whose members are never acted on unless declared",
        json_schema_extra={"default": list(DEFAULT_ADMIN_GROUPS)},
    )

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            _ = parts.port  # urlsplit checks the port only when asked for it
        except ValueError as exc:
            raise ValueError(f"invalid port in {value!r}") from exc
        if parts.scheme not in {"ldap", "ldaps"} or not parts.hostname:
            raise ValueError(f"expected ldap://HOST[:PORT] or ldaps://HOST[:PORT], got {value!r}")
        return value

    @field_validator("ca_file")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("ca_file must be an absolute path")
        return value

    @field_validator("bind_password")
    @classmethod
    def _not_empty(cls, value: Secret) -> Secret:
        if not value.reveal():
            raise ValueError("String should have at least 1 character")
        return value

    @field_validator("bind_dn", "accounts_dn", "groups_dn")
    @classmethod
    def _dn(cls, value: str) -> str:
        if not value.strip():
            # An empty bind DN binds anonymously; an empty base searches the whole tree.
            raise ValueError("must not be empty")
        try:
            rdns(value)
        except ldap_errors.LDAPInvalidDnError as exc:
            raise ValueError(f"invalid DN {value!r}: {exc}") from exc
        return value


# ---------------------------------------------------------------- the directory


class LdapDirectory:
    """One admin connection to one target. Used from one thread at a time."""

    def __init__(self, target: str, settings: LdapSettings, scope: Scope, conn: Any) -> None:
        self._target = target
        self._settings = settings
        self._conn = conn
        # Compared as the directory compares uids, so that "Admin" excludes uid=admin too.
        self._excluded = frozenset(fold(name) for name in scope.excluded)
        self._admin_groups = frozenset(fold(cn) for cn in settings.admin_groups)
        self._granted = scope.entitlements

    def _search(
        self,
        base: str,
        scope: str,
        search_filter: str,
        attributes: list[str],
        *,
        types_only: bool = False,
        absent_ok: bool = False,
        failure: type[ConnectorError] = TargetUnreachable,
    ) -> list[dict[str, Any]]:
        """Every entry, page by page; none when ``absent_ok`` and ``base`` does not exist.
        Anything short of a complete answer raises: a partial read (a size limit, say) would
        look like accounts and memberships gone."""
        tolerated = frozenset({results.RESULT_NO_SUCH_OBJECT} if absent_ok else ())
        entries: list[dict[str, Any]] = []
        cookie: bytes | None = None
        while True:
            self._conn.search(
                base,
                search_filter,
                search_scope=scope,
                attributes=attributes,
                types_only=types_only,
                paged_size=PAGE_SIZE,
                paged_cookie=cookie,
            )
            code = self._check(f"search {base}", failure, tolerated)
            if code == results.RESULT_NO_SUCH_OBJECT:
                return []
            entries += [e for e in self._conn.response if e["type"] == "searchResEntry"]
            control = self._conn.result.get("controls", {}).get(PAGED_RESULTS_OID, {})
            cookie = control.get("value", {}).get("cookie")
            if not cookie:
                return entries

    def _presence(self, account: str, dn: str) -> Any:
        """Which of userPassword and pwdAccountLockedTime the account has (names, no values);
        ActionFailed when there is no such account."""
        entries = self._search(
            dn,
            ldap3.BASE,
            "(objectClass=*)",
            [PASSWORD, LOCK],
            types_only=True,
            absent_ok=True,
            failure=ActionFailed,
        )
        if not entries:
            raise ActionFailed(f"{self._target}: account {account!r} does not exist")
        return entries[0]["raw_attributes"]

    def close(self) -> None:
        with suppress(ldap_errors.LDAPException):  # already gone: nothing left to release
            self._conn.unbind()

    def _is_excluded(self, account: str) -> bool:
        return fold(account) in self._excluded

    def _account_dn(self, account: str) -> str:
        return f"uid={escape_rdn(account)},{self._settings.accounts_dn}"

    def _check(
        self,
        doing: str,
        failure: type[ConnectorError] = ActionFailed,
        tolerated: frozenset[int] = frozenset(),
    ) -> int:
        """The result code of the last operation when it succeeded or is ``tolerated``;
        raises otherwise, with the server's words (which never echo a password)."""
        result = self._conn.result
        code = int(result["result"])
        if code == results.RESULT_SUCCESS or code in tolerated:
            return code
        detail = f"{doing}: {result['description']}"
        if result.get("message"):
            detail += f" ({result['message']})"
        if code in _HINTS:
            detail += f": {_HINTS[code]}"
        raise (TargetUnreachable if code in _UNAVAILABLE else failure)(self._say(detail))

    @contextmanager
    def _ldap_errors(self, failure: type[ConnectorError]) -> Iterator[None]:
        """ldap3's exceptions as lockstep's: a lost connection means nothing can be
        concluded; anything else ldap3 raises is ``failure``."""
        try:
            yield
        except ldap_errors.LDAPCommunicationError as exc:
            raise TargetUnreachable(self._say(f"connection lost: {exc}")) from exc
        except ldap_errors.LDAPException as exc:
            raise failure(self._say(f"{type(exc).__name__}: {exc}")) from exc

    def _say(self, detail: str) -> str:
        return redact(f"{self._target}: {detail}")
