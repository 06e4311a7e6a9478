"""The PostgreSQL grammar, settings and account-name rules: all offline."""

from __future__ import annotations

import getpass
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lockstep.connectors.base import GrammarError, secret_fields
from lockstep.connectors.postgres.connector import PostgresConnectorType
from lockstep.connectors.postgres.grammar import (
    PRIVILEGES,
    Entitlement,
    Kind,
    parse,
    parse_entitlement,
    quote_ident,
)
from lockstep.connectors.postgres.settings import PostgresSettings
from lockstep.connectors.registry import connector_type
from lockstep.model import Op
from lockstep.secret import Secret, redact

CONNECTOR = PostgresConnectorType()

# Names PostgreSQL can store as written: no NUL, at most 63 bytes of UTF-8.
names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1
).filter(lambda n: len(n.encode()) <= 63)
object_kinds = st.sampled_from([Kind.TABLE, Kind.SCHEMA, Kind.DATABASE])


@st.composite
def entitlements(draw: st.DrawFn) -> Entitlement:
    kind = draw(st.sampled_from(list(Kind)))
    if kind is Kind.ROLE:
        return Entitlement(kind, None, (draw(names.filter(lambda n: n not in {"public", "none"})),))
    parts = 2 if kind is Kind.TABLE else 1
    return Entitlement(
        kind,
        draw(st.sampled_from(PRIVILEGES[kind])),
        tuple(draw(names) for _ in range(parts)),
    )


def random_case(word: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(word), max_size=len(word))
    return flips.map(
        lambda up: "".join(c.upper() if u else c.lower() for c, u in zip(word, up, strict=True))
    )


# ------------------------------------------------------------------ canonical forms


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("role:app_readonly", "role:app_readonly"),
        ("ROLE:App Readonly", "role:App Readonly"),
        ('role:a"b; --', 'role:a"b; --'),
        ("role:pg_read_all_data", "role:pg_read_all_data"),
        ("SELECT on table public.orders", "SELECT on table public.orders"),
        ("select ON TABLE Public.Orders", "SELECT on table public.orders"),
        ("  Select   on  table  public . orders  ", "SELECT on table public.orders"),
        ('SELECT on table "Public"."Orders"', 'SELECT on table "Public"."Orders"'),
        ('SELECT on table "public"."orders"', "SELECT on table public.orders"),
        ('insert on table billing."Order ""Lines"""', 'INSERT on table billing."Order ""Lines"""'),
        ('SELECT on table "a.b".c', 'SELECT on table "a.b".c'),
        ("SELECT on table søren.ÜBER", 'SELECT on table "søren"."Über"'),
        ("SELECT on table s.t$1", "SELECT on table s.t$1"),
        ('SELECT on table s."1t"', 'SELECT on table s."1t"'),
        ("usage on schema BILLING", "USAGE on schema billing"),
        ("create on schema billing", "CREATE on schema billing"),
        ("connect on database orders", "CONNECT on database orders"),
        ("temp on database orders", "TEMPORARY on database orders"),
        ("Temporary on Database orders", "TEMPORARY on database orders"),
        ('CONNECT on database "My DB"', 'CONNECT on database "My DB"'),
    ],
)
def test_canonical_forms(written: str, canonical: str) -> None:
    assert parse_entitlement(written) == canonical
    assert parse_entitlement(canonical) == canonical


@pytest.mark.parametrize(
    ("name", "rendered"),
    [
        ("orders", "orders"),
        ("_x$1", "_x$1"),
        ("Orders", '"Orders"'),
        ("1st", '"1st"'),
        ("a b", '"a b"'),
        ('a"b', '"a""b"'),
        ("søren", '"søren"'),
        ("$x", '"$x"'),
    ],
)
def test_quote_ident(name: str, rendered: str) -> None:
    assert quote_ident(name) == rendered


@given(entitlements())
def test_every_entitlement_round_trips_through_its_canonical_text(entitlement: Entitlement) -> None:
    text = str(entitlement)
    assert parse(text) == entitlement
    assert parse_entitlement(text) == text


@given(st.data(), object_kinds)
def test_keywords_are_case_insensitive(data: st.DataObject, kind: Kind) -> None:
    privilege = data.draw(st.sampled_from(PRIVILEGES[kind]))
    name = "s.t" if kind is Kind.TABLE else "n"
    written = " ".join(
        data.draw(random_case(word)) for word in (privilege, "on", kind.value, name.upper())
    )
    assert parse_entitlement(written) == f"{privilege} on {kind} {name}"


@given(st.from_regex(r"[a-z_][a-z0-9_$]{0,40}", fullmatch=True), st.data())
def test_bare_names_fold_to_lower_case(name: str, data: st.DataObject) -> None:
    written = data.draw(random_case(name))
    assert parse_entitlement(f"USAGE on schema {written}") == f"USAGE on schema {name}"


# ------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot be empty; accepted forms: 'role:NAME'"),
        ("   ", "cannot be empty"),
        ("SELECT", "cannot read 'SELECT'; accepted forms"),
        ("SELECT public.orders", "accepted forms"),
        ("SELECT in table public.orders", "cannot read"),
        ("SELECT on table", "cannot read"),
        ("ALL on table public.orders", "ALL is not accepted"),
        ("all privileges on table public.orders", "ALL is not accepted"),
        ("SELECT, INSERT on table public.orders", "one privilege per entitlement"),
        ("SELECT,INSERT on table public.orders", "one privilege per entitlement"),
        ("EXECUTE on function f", "unknown object type 'function'"),
        ("USAGE on table public.orders", "'USAGE' is not a privilege on a table (accepted on"),
        ("SELECT on schema billing", "'SELECT' is not a privilege on a schema"),
        ("TEMP on table public.orders", "'TEMP' is not a privilege on a table"),
        ("CONNECT on schema billing", "accepted on schema: USAGE, CREATE"),
        ("SELECT on table orders", "a table is named SCHEMA.TABLE"),
        ("SELECT on table db.public.orders", "a table is named SCHEMA.TABLE"),
        ("USAGE on schema a.b", "a schema is named one unqualified NAME"),
        ('SELECT on table public."orders', "unterminated double quote"),
        ('SELECT on table public.""', '"" is not a name'),
        ("SELECT on table public.orders extra", "unexpected ' extra' after a name"),
        ("SELECT on table public.1orders", "expected a name at '1orders'"),
        ("SELECT on table public.", "expected a name at ''"),
        ("SELECT on table public.or-ders", "unexpected '-ders'"),
        ("USAGE on schema " + "x" * 64, "is 64 bytes in UTF-8; PostgreSQL keeps at most 63"),
        ('USAGE on schema "a\x00b"', "cannot contain a NUL byte"),
        ("role:", "the role name in 'role:' cannot be empty"),
        ("role:" + "é" * 32, "64 bytes"),
        ("role:a\x00", "NUL"),
        ("role:public", "not a role one can be a member of"),
    ],
)
def test_rejections_say_why(text: str, message: str) -> None:
    with pytest.raises(GrammarError, match=re.escape(message)):
        parse_entitlement(text)


def test_malformed_text_lists_every_accepted_form() -> None:
    with pytest.raises(GrammarError) as caught:
        parse_entitlement("read everything")
    for form in ("role:NAME", "on table SCHEMA.TABLE", "on schema NAME", "on database NAME"):
        assert form in str(caught.value)


# ------------------------------------------------------------------ account names


@pytest.mark.parametrize(
    "name", ['a"b', "x; DROP ROLE y", "Robert'); --", "søren-ü", "with space", "é" * 31 + "x"]
)
def test_check_account_takes_any_storable_name(name: str) -> None:
    CONNECTOR.check_account(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "cannot be empty"),
        ("a\x00b", "NUL"),
        ("x" * 64, "is 64 bytes"),
        ("é" * 32, "is 64 bytes"),
        ("pg_app", "reserved"),
        ("public", "reserved"),
        ("none", "reserved"),
    ],
)
def test_check_account_rejects(name: str, message: str) -> None:
    with pytest.raises(GrammarError, match=message):
        CONNECTOR.check_account(name)


@given(names.filter(lambda n: not n.startswith("pg_") and n not in {"public", "none"}))
def test_check_account_accepts_what_postgres_stores_verbatim(name: str) -> None:
    CONNECTOR.check_account(name)


# ------------------------------------------------------------------ settings and plugin


def test_settings_accept_url_and_keyword_dsns() -> None:
    model = CONNECTOR.settings_model()
    model.model_validate({"dsn": "postgresql://admin:pw@db.example:5432/orders"})
    model.model_validate(
        {"dsn": "host=db user=admin dbname=orders", "probe_host": "db", "probe_port": 6432}
    )


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"dsn": "postgresql://admin:pw@db/orders", "password": "x"}, "password"),
        ({"dsn": "nonsense hunter2"}, "dsn"),
        ({"dsn": "postgresql://admin:hunter/2@db/orders"}, "dsn"),
        ({"dsn": "host=db", "probe_host": "/var/run/postgresql"}, "probe_host"),
        ({"dsn": "host=db", "probe_port": 70000}, "probe_port"),
        ({}, "dsn"),
    ],
)
def test_settings_rejections_never_echo_the_dsn(settings: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CONNECTOR.settings_model().model_validate(settings)
    assert caught.value.errors()[0]["loc"] == (field,)
    assert "hunter" not in str(caught.value)


def settings(dsn: str) -> PostgresSettings:
    return PostgresSettings.model_validate({"dsn": dsn})


def test_the_dsn_is_held_as_a_secret_and_both_its_forms_register_the_password() -> None:
    url = settings("postgresql://admin:url-hunter2@db/orders")
    keywords = settings("host=db user=admin password='kw-hunter2'")
    assert isinstance(url.dsn, Secret) and isinstance(keywords.dsn, Secret)
    assert "hunter2" not in f"{url!r} {url} {keywords!r} {keywords}"
    assert redact("driver said: url-hunter2, kw-hunter2") == "driver said: ***, ***"


def test_the_admin_is_excluded_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CONNECTOR.default_excluded(settings("postgresql://lockstep_admin:pw@db/orders")) == {
        "lockstep_admin"
    }
    assert CONNECTOR.default_excluded(settings("user=dba host=db")) == {"dba"}
    # With no user in the DSN, libpq's default: the login name; PGUSER is never read.
    monkeypatch.setenv("PGUSER", "from_env")
    assert CONNECTOR.default_excluded(settings("host=db")) == {getpass.getuser()}


def test_plugin_declares_itself() -> None:
    assert isinstance(connector_type("postgres"), PostgresConnectorType)
    assert CONNECTOR.name == "postgres"
    assert secret_fields(CONNECTOR.settings_model()) == {"dsn"}
    assert CONNECTOR.propagation_window(settings("host=db")) == 0.0
    assert set(CONNECTOR.permissions) == set(Op)
    assert all(CONNECTOR.permissions[op] for op in Op)
