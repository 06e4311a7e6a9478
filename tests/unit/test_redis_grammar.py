"""The Redis connector's grammar: what an entitlement and an account name may be, offline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lockstep.connectors.base import GrammarError, secret_fields
from lockstep.connectors.redis.connector import RedisConnectorType, RedisSettings
from lockstep.model import Op
from lockstep.secret import Secret, redact

CT = RedisConnectorType()


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("~orders:*", "~orders:*"),
        ("%R~ro:*", "%R~ro:*"),
        ("%W~wo:*", "%W~wo:*"),
        ("%RW~rw:*", "~rw:*"),
        ("~*", "~*"),
        ("~Mixed:Case[ab]?\\*", "~Mixed:Case[ab]?\\*"),
        ("~clé:*", "~clé:*"),
        ("&events:*", "&events:*"),
        ("+GET", "+get"),
        ("+Config|Get", "+config|get"),
        ("+json.get", "+json.get"),
        ("+@READ", "+@read"),
        ("+@all", "+@all"),
        ("-FLUSHALL", "-flushall"),
        ("-config|set", "-config|set"),
        ("-@Dangerous", "-@dangerous"),
    ],
)
def test_entitlements_take_the_form_redis_renders(text: str, canonical: str) -> None:
    assert CT.parse_entitlement(text) == canonical
    assert CT.parse_entitlement(canonical) == canonical


@pytest.mark.parametrize(
    "text",
    [
        # a second rule smuggled in with a separator
        "~a ~b",
        "~a\t+@all",
        "+get >pw",
        "+@all\n",
        "~a\n~b",
        "&a\r",
        "~a\u00a0~b",  # no-break space
        "~a\u2028+@all",  # line separator
        "~a\u200b",  # zero-width space
        "~a\x00",
        "+get\x00",
        "(~x +get)",
        # rules that are not entitlements: flags, passwords, resets, wildcards by keyword
        "on",
        "off",
        "nopass",
        "reset",
        "resetkeys",
        "resetchannels",
        "resetpass",
        "allkeys",
        "allchannels",
        "allcommands",
        "nocommands",
        ">password",
        "<password",
        "#" + "0" * 64,
        "!" + "0" * 64,
        "-@all",
        # malformed
        "",
        "~",
        "&",
        "%R~",
        "%X~a",
        "%~a",
        '~a"b',
        "&a'b",
        "+",
        "-",
        "+@",
        "+get|",
        "+a|b|c",
        "+@read|x",
        "+g et",
        "get",
        "+gét",
        "+\u212aeys",  # the Kelvin sign lower-cases to an ASCII k
    ],
)
def test_anything_but_exactly_one_rule_is_rejected(text: str) -> None:
    with pytest.raises(GrammarError):
        CT.parse_entitlement(text)


@pytest.mark.parametrize(
    "name", ["payments_api", "svc-1", "app.worker", "team:svc", "svc@prod", "A1", "Default"]
)
def test_plain_account_names_are_accepted(name: str) -> None:
    CT.check_account(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "default",
        "a b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        'q"x',
        "q'x",
        "a;b",
        "a\\b",
        "(x",
        ">x",
        "a=b",
        "é",
        "d\u0435fault",  # a Cyrillic letter: looks like 'default'
        "svc\u200b",
    ],
)
def test_hostile_account_names_are_rejected(name: str) -> None:
    with pytest.raises(GrammarError):
        CT.check_account(name)


@pytest.mark.parametrize(
    ("url", "excluded"),
    [
        ("redis://lockstep:pw@127.0.0.1:6379/0", {"default", "lockstep"}),
        ("redis://adm%40ops:pw@127.0.0.1:6379/0", {"default", "adm@ops"}),
        ("redis://:pw@127.0.0.1:6379/0", {"default"}),
        ("rediss://127.0.0.1:6380", {"default"}),
    ],
)
def test_default_and_the_admin_are_always_excluded(url: str, excluded: set[str]) -> None:
    assert CT.default_excluded(RedisSettings.model_validate({"url": url})) == excluded


def test_settings_hold_one_secret_url() -> None:
    model = CT.settings_model()
    assert secret_fields(model) == {"url"}
    settings = RedisSettings.model_validate({"url": "redis://a:hunter2-pw@h:1/0"})
    assert isinstance(settings.url, Secret)
    assert settings.url.reveal() == "redis://a:hunter2-pw@h:1/0"
    assert "hunter2" not in f"{settings!r} {settings}"
    assert redact("AUTH failed for hunter2-pw") == "AUTH failed for ***"
    with pytest.raises(ValidationError):
        model.model_validate({"url": "redis://h:1/0", "dsn": "x"})
    with pytest.raises(ValidationError, match="redis://"):
        model.model_validate({"url": "postgresql://u:hunter22@h/db"})


def test_every_operation_lists_its_admin_permissions() -> None:
    assert set(CT.permissions) == set(Op)
    assert all(CT.permissions[op] for op in Op)
    assert CT.name == "redis"
    assert CT.propagation_window(RedisSettings.model_validate({"url": "redis://h:1/0"})) == 0.0
