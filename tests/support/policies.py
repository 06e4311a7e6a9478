"""Lockstep policies for tests, built as data and written as the YAML a user would write.

A test says what its policy holds and changes a field to say what changed; the YAML follows
the contract (``version: 1``, targets, owners, identities, rules). Secrets enter a policy only
as ``${VAR}`` references, so ``Target.postgres``, ``.ldap``, ``.redis`` and ``.aws`` take a
``Var`` wherever the policy carries a secret::

    policy = Policy(
        targets={"orders-db": Target.postgres(Var("ORDERS_DB_DSN"), environment="prod")},
        owners={"payments-team": Owner(["alice@example.com"])},
        identities={
            "payments-api": Identity(
                owner="payments-team",
                purpose="Serve the payments API",
                access=[Access("orders-db", "payments_api", ["role:app_readonly"])],
            )
        },
    )
    policy.write(workdir)

A test whose subject is the YAML text itself (line numbers in errors, malformed input, the
README's examples) writes that text literally instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Var:
    """``${NAME}``: a value the policy takes from the environment when it is loaded."""

    name: str

    def __str__(self) -> str:
        return f"${{{self.name}}}"


Setting = str | int | float | bool | Var | list[str]


@dataclass
class Target:
    """A target of any type; the classmethods name the settings each type needs."""

    type: str
    settings: dict[str, Setting] = field(default_factory=dict)
    environment: str | None = None
    exclude: list[str] = field(default_factory=list)

    @classmethod
    def postgres(
        cls,
        dsn: Var,
        *,
        environment: str | None = None,
        exclude: Sequence[str] = (),
        **settings: Setting,
    ) -> Target:
        return cls("postgres", {"dsn": dsn, **settings}, environment, list(exclude))

    @classmethod
    def ldap(
        cls,
        *,
        url: str | Var,
        bind_dn: str,
        bind_password: Var,
        accounts_dn: str,
        groups_dn: str,
        environment: str | None = None,
        **settings: Setting,
    ) -> Target:
        connection: dict[str, Setting] = {
            "url": url,
            "bind_dn": bind_dn,
            "bind_password": bind_password,
            "accounts_dn": accounts_dn,
            "groups_dn": groups_dn,
        }
        return cls("ldap", connection | settings, environment)

    @classmethod
    def redis(cls, url: Var, *, environment: str | None = None, **settings: Setting) -> Target:
        return cls("redis", {"url": url, **settings}, environment)

    @classmethod
    def aws(
        cls,
        region: str,
        *,
        endpoint_url: str | None = None,
        environment: str | None = None,
        **settings: Setting,
    ) -> Target:
        endpoint: dict[str, Setting] = (
            {} if endpoint_url is None else {"endpoint_url": endpoint_url}
        )
        return cls("aws", {"region": region, **endpoint, **settings}, environment)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type, **self.settings}
        if self.environment is not None:
            doc["environment"] = self.environment
        if self.exclude:
            doc["manage"] = {"exclude": list(self.exclude)}
        return doc


@dataclass
class Owner:
    contacts: list[str]
    status: str | None = None

    def document(self) -> dict[str, Any]:
        return _present({"contacts": list(self.contacts), "status": self.status})


@dataclass
class Access:
    target: str
    account: str
    entitlements: list[str] = field(default_factory=list)
    expires: datetime | None = None

    def document(self) -> dict[str, Any]:
        return _present(
            {
                "target": self.target,
                "account": self.account,
                "entitlements": list(self.entitlements),
                "expires": self.expires,
            }
        )


@dataclass
class Credentials:
    rotate_every: str | None = None
    sink: str | None = None
    lease_ttl: str | None = None
    lease_max_ttl: str | None = None
    max_live_leases: int | None = None

    def document(self) -> dict[str, Any]:
        return _present(
            {
                "rotate_every": self.rotate_every,
                "sink": self.sink,
                "lease_ttl": self.lease_ttl,
                "lease_max_ttl": self.lease_max_ttl,
                "max_live_leases": self.max_live_leases,
            }
        )


@dataclass
class Workload:
    issuer: str
    subject: str
    audience: str
    claims: dict[str, str] = field(default_factory=dict)
    max_token_lifetime: str | None = None

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "issuer": self.issuer,
            "subject": self.subject,
            "audience": self.audience,
        }
        if self.claims:
            doc["claims"] = dict(self.claims)
        if self.max_token_lifetime:
            doc["max_token_lifetime"] = self.max_token_lifetime
        return doc


@dataclass
class Identity:
    owner: str
    purpose: str
    access: list[Access] = field(default_factory=list)
    environment: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    workload: Workload | None = None

    def document(self) -> dict[str, Any]:
        return _present(
            {
                "owner": self.owner,
                "purpose": self.purpose,
                "environment": self.environment,
                "access": [a.document() for a in self.access],
                "credentials": self.credentials.document() or None,
                "workload": self.workload.document() if self.workload else None,
            }
        )


@dataclass
class Policy:
    targets: dict[str, Target] = field(default_factory=dict)
    owners: dict[str, Owner] = field(default_factory=dict)
    identities: dict[str, Identity] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)
    governance: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return _present(
            {
                "version": 1,
                "targets": {name: t.document() for name, t in self.targets.items()},
                "owners": {name: o.document() for name, o in self.owners.items()} or None,
                "identities": {name: i.document() for name, i in self.identities.items()} or None,
                "rules": dict(self.rules) or None,
                "governance": dict(self.governance) or None,
            }
        )

    def render(self) -> str:
        # No line wrapping: tests look for whole lines of the policy they wrote.
        return yaml.dump(
            self.document(),
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=10_000,
        )

    def write(self, directory: Path, name: str = "lockstep.yaml") -> Path:
        path = directory / name
        path.write_text(self.render())
        return path


def _present(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without the keys left unset, which the policy then does not mention."""
    return {key: value for key, value in doc.items() if value is not None}


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as the contract and people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_var(dumper: yaml.SafeDumper, var: Var) -> yaml.ScalarNode:
    return dumper.represent_str(str(var))


def _represent_time(dumper: yaml.SafeDumper, value: datetime) -> yaml.ScalarNode:
    # The contract's form (2027-03-31T00:00:00Z), which YAML reads back as a timestamp.
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dumper.represent_scalar("tag:yaml.org,2002:timestamp", text)


_Dumper.add_representer(Var, _represent_var)
_Dumper.add_representer(datetime, _represent_time)
