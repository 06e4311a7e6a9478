"""The LDAP connector's grammar and settings: what an entitlement, the admin's exclusion and
the target keys may be, offline."""

from __future__ import annotations

import pytest

from lockstep.connectors.base import GrammarError, secret_fields
from lockstep.connectors.ldap.connector import LdapConnectorType, LdapSettings
from lockstep.model import Op
from lockstep.secret import Secret

CONNECTOR = LdapConnectorType()


def test_entitlements_are_group_memberships_with_the_cn_kept_exact() -> None:
    assert CONNECTOR.parse_entitlement("group:Readers") == "group:Readers"
    assert CONNECTOR.parse_entitlement("GROUP:a,b") == "group:a,b"
    for wrong in ["Readers", "group:", "group:  ", "role:readers", "cn=readers"]:
        with pytest.raises(GrammarError, match="group:CN"):
            CONNECTOR.parse_entitlement(wrong)


GOOD_SETTINGS = {
    "url": "ldaps://ldap.example.test:636",
    "bind_dn": "cn=admin,dc=example,dc=test",
    "bind_password": "s3cret-value",
    "accounts_dn": "ou=people,dc=example,dc=test",
    "groups_dn": "ou=groups,dc=example,dc=test",
}


def test_the_admin_is_excluded_only_when_it_is_an_account() -> None:
    people = "ou=people,dc=example,dc=test"

    def excluded(bind_dn: str) -> frozenset[str]:
        settings = GOOD_SETTINGS | {"bind_dn": bind_dn, "accounts_dn": people}
        return CONNECTOR.default_excluded(LdapSettings.model_validate(settings))

    assert excluded(f"uid=lockstep,{people}") == {"lockstep"}
    assert excluded("UID=lockstep,OU=People,dc=Example,dc=test") == {"lockstep"}
    assert excluded("cn=admin,dc=example,dc=test") == frozenset()
    assert excluded(f"uid=lockstep,ou=robots,{people}") == frozenset()


def test_settings_model_forbids_unknown_keys_and_checks_url_and_dns() -> None:
    model = CONNECTOR.settings_model()
    settings = LdapSettings.model_validate(GOOD_SETTINGS)
    assert isinstance(settings.bind_password, Secret)
    assert "s3cret-value" not in f"{settings!r} {settings}"
    for bad in [
        {"dsn": "x"},
        {"url": "http://ldap.example.test"},
        {"url": "ldap://127.0.0.1:99999"},
        {"url": "ldap://[::1"},
        {"bind_password": ""},
        {"accounts_dn": "not a dn"},
        {"groups_dn": "ou=groups, dc=example"},  # RFC 4514: no spaces around separators
    ]:
        with pytest.raises(ValueError):
            model.model_validate(GOOD_SETTINGS | bad)
    assert secret_fields(model) == {"bind_password"}
    assert set(CONNECTOR.permissions) == set(Op)
