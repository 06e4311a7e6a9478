"""What the conformance suite knows about each connector, and the project it drives.

``conformance_target`` is parametrised over every connector lockstep ships: it starts (or
reuses) that connector's real server, makes the groups, roles or policies the suite grants,
and hands over an adapter. ``project`` is a lockstep project directory on that target, driven
through the ``lockstep`` command exactly as a user drives it.

This is a pytest plugin (test modules list it in ``pytest_plugins``), not a conftest.py: the
service launchers import ``unavailable`` from the root conftest by the module name
``conftest``, which pytest hands to whichever conftest.py it loaded last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import yaml
from psycopg import sql

from lockstep.connectors.base import (
    AppliesBatches,
    ConnectorType,
    Credential,
    HoldsTwoCredentials,
    IssuesLeaseBatches,
    IssuesLeases,
    ObservesUsage,
    ProbesInParallel,
    Scope,
    Session,
    WatchesChanges,
)
from lockstep.connectors.registry import connector_type
from lockstep.demo.localpg import LocalPostgres, free_port
from lockstep.model import Target
from lockstep.policy.load import load_policy
from lockstep.secret import Secret, generate_password
from services.slapd import (  # noqa: F401 - fixtures, imported as the LDAP tests do
    LdapTarget,
    ldap_target_fixture,
    slapd_server_fixture,
)

if TYPE_CHECKING:  # loaded for real through pytest_plugins, so that pytest rewrites it
    from services.moto_server import MotoServer

pytest_plugins = ("services.redis_server", "services.moto_server")

TARGET = "conformance"
# Every optional capability a connector's sessions may offer.
CAPABILITIES = (
    WatchesChanges,
    ObservesUsage,
    HoldsTwoCredentials,
    IssuesLeases,
    IssuesLeaseBatches,
    AppliesBatches,
    ProbesInParallel,
)
POLICY_FILE = "lockstep.yaml"
IDENTITY_PREFIX = "svc"


@dataclass(frozen=True)
class ConformanceTarget:
    """One connector on its real server, as the conformance suite sees it."""

    connector: ConnectorType
    settings: Mapping[str, object]  # the target's keys as a policy writes them; secrets ${VAR}
    env: Mapping[str, str]  # the variables ``settings`` names
    dead_env: Mapping[str, str]  # the same variables, pointing at a port nobody listens on
    # Variables (of the policy, or AWS's own) that keep the server but make the admin's
    # secret ``wrong_secret``.
    wrong_env: Mapping[str, str]
    wrong_secret: Secret
    account: str  # a plain, legal account name
    entitlements: tuple[str, str]  # canonical; both exist in the server
    hostile_accounts: tuple[str, ...]  # legal, full of the target's metacharacters
    illegal_accounts: tuple[str, ...]  # names the connector's grammar refuses
    admin_secrets: tuple[Secret, ...]  # what lockstep connects with: never to be shown

    @property
    def type(self) -> str:
        return self.connector.name

    def unreachable(self) -> ConformanceTarget:
        return replace(self, env={**self.env, **self.dead_env})

    def with_wrong_admin(self) -> ConformanceTarget:
        """The same server, with a wrong admin secret, which must never be shown either."""
        secrets = (*self.admin_secrets, self.wrong_secret)
        return replace(self, env={**self.env, **self.wrong_env}, admin_secrets=secrets)

    def target(self) -> Target:
        """The target exactly as the policy loader builds it for the CLI."""
        with tempfile.TemporaryDirectory() as directory:
            policy = Path(directory) / POLICY_FILE
            policy.write_text(yaml.safe_dump({"version": 1, "targets": {TARGET: self.yaml()}}))
            return load_policy(policy, self.env).policy.targets[TARGET]

    def yaml(self) -> dict[str, object]:
        return {"type": self.type, **self.settings}

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An admin session of lockstep's own, to read back and probe behind the CLI."""
        target = self.target()
        opened = self.connector.open(target, Scope(frozenset(), target.exclude))
        try:
            yield opened
        finally:
            opened.close()


# ---------------------------------------------------------------- one adapter per connector


def _postgres(request: pytest.FixtureRequest) -> ConformanceTarget:
    pg: LocalPostgres = request.getfixturevalue("pg")
    groups = ("conformance_readers", "conformance_writers")
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        for group in groups:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
    wrong = generate_password()
    # The dead DSN holds the admin's password too: it must not show when nothing answers.
    dead = f"postgresql://{pg.superuser}:{pg.password.reveal()}@127.0.0.1:{free_port()}/postgres"
    return ConformanceTarget(
        connector=connector_type("postgres"),
        settings={"dsn": "${CONFORMANCE_DSN}"},
        env={"CONFORMANCE_DSN": pg.dsn()},
        dead_env={"CONFORMANCE_DSN": dead},
        wrong_env={
            "CONFORMANCE_DSN": f"postgresql://{pg.superuser}:{wrong.reveal()}@127.0.0.1:"
            f"{pg.port}/postgres"
        },
        wrong_secret=wrong,
        account="conformance_svc",
        entitlements=(f"role:{groups[0]}", f"role:{groups[1]}"),
        hostile_accounts=(
            'a"b',
            "x; DROP ROLE conformance_readers; --",
            "Robert'); --",
            "back\\slash $1 %s",
            "UPPER case",
            " leading and trailing ",
            "new\nline\ttab",
            "søren-ü",
            "n" * 63,
        ),
        illegal_accounts=("pg_sneaky", "public", "n" * 64, "nul\x00byte"),
        admin_secrets=(pg.password,),
    )


def _ldap(request: pytest.FixtureRequest) -> ConformanceTarget:
    ldap: LdapTarget = request.getfixturevalue("ldap_target")
    server = ldap.server
    wrong = generate_password()
    return ConformanceTarget(
        connector=connector_type("ldap"),
        settings={
            "url": "${CONFORMANCE_LDAP_URL}",
            "bind_dn": server.admin_dn,
            "bind_password": "${CONFORMANCE_LDAP_PASSWORD}",
            "accounts_dn": server.people_dn,
            "groups_dn": server.groups_dn,
        },
        env={
            "CONFORMANCE_LDAP_URL": server.url,
            "CONFORMANCE_LDAP_PASSWORD": server.admin_password.reveal(),
        },
        dead_env={"CONFORMANCE_LDAP_URL": f"ldap://127.0.0.1:{free_port()}"},
        wrong_env={"CONFORMANCE_LDAP_PASSWORD": wrong.reveal()},
        wrong_secret=wrong,
        account="conformance-svc",
        entitlements=("group:readers", "group:writers"),  # seeded by the fixture
        hostile_accounts=(
            "a,b",
            "x=y",
            "+plus",
            "#hash",
            "back\\slash",
            'quote"s',
            "o'brien",
            "semi;colon",
            "*(wild)",
            "<angle>",
            "*",
            " leading space",
            "trailing ",
            "new\nline",
            "ünïcødé-サービス",
        ),
        illegal_accounts=("   ", "n" * 257, "nul\x00byte"),
        admin_secrets=(server.admin_password,),
    )


def _redis(request: pytest.FixtureRequest) -> ConformanceTarget:
    request.getfixturevalue("redis_target")  # empties the server around the test
    server = request.getfixturevalue("redis_server")
    dead = f"redis://{server.admin_user}:{server.password.reveal()}@127.0.0.1:{free_port()}/0"
    wrong = generate_password()
    return ConformanceTarget(
        connector=connector_type("redis"),
        settings={"url": "${CONFORMANCE_REDIS_URL}"},
        env={"CONFORMANCE_REDIS_URL": server.url()},
        dead_env={"CONFORMANCE_REDIS_URL": dead},
        wrong_env={
            "CONFORMANCE_REDIS_URL": f"redis://{server.admin_user}:{wrong.reveal()}@"
            f"{server.host}:{server.port}/0"
        },
        wrong_secret=wrong,
        account="conformance-svc",
        entitlements=("~conformance:*", "+get"),
        # ACL keywords and rule-like words are legal user names: they must stay names.
        hostile_accounts=("on", "nopass", "resetpass", "-@all", "@all", "svc:a@b.c-d_e"),
        illegal_accounts=(
            "default",
            'a"b',
            "x;y",
            "with space",
            ">password",
            "~*",
            "ünï",
        ),
        admin_secrets=(server.password,),
    )


_ALLOW_READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}


def _aws(request: pytest.FixtureRequest) -> ConformanceTarget:
    request.getfixturevalue("aws_target")  # resets moto, puts the admin key in the environment
    moto: MotoServer = request.getfixturevalue("moto_server")
    iam = moto.client("iam")
    wrong = generate_password()
    arns = tuple(
        iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(_ALLOW_READ))["Policy"]["Arn"]
        for name in ("conformance-read", "conformance-write")
    )
    return ConformanceTarget(
        connector=connector_type("aws"),
        # moto forgets a deleted key at once: no propagation window to wait out.
        settings={
            "region": moto.region,
            "endpoint_url": "${CONFORMANCE_AWS_ENDPOINT}",
            "propagation_window": 0,
        },
        env={"CONFORMANCE_AWS_ENDPOINT": moto.endpoint_url},
        dead_env={"CONFORMANCE_AWS_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
        # The admin key reaches boto3 from the environment, never through the policy.
        wrong_env={"AWS_SECRET_ACCESS_KEY": wrong.reveal()},
        wrong_secret=wrong,
        account="user/conformance-svc",
        entitlements=(f"policy:{arns[0]}", f"policy:{arns[1]}"),
        hostile_accounts=("user/a+b=c,d.e@f_g-h", "user/--", "user/=,", "user/" + "n" * 64),
        illegal_accounts=(
            "user/a'b",
            'user/a"b',
            "user/x;y",
            "user/a b",
            "user/" + "n" * 65,
            "group/x",
            "plain",
        ),
        admin_secrets=(moto.secret_access_key,),
    )


ADAPTERS: Mapping[str, Callable[[pytest.FixtureRequest], ConformanceTarget]] = {
    "postgres": _postgres,
    "ldap": _ldap,
    "redis": _redis,
    "aws": _aws,
}


@pytest.fixture(params=list(ADAPTERS))
def conformance_target(request: pytest.FixtureRequest) -> ConformanceTarget:
    return ADAPTERS[request.param](request)


# ---------------------------------------------------------------- the project


@dataclass
class Project:
    """A project directory with one target, driven through ``python -m lockstep``."""

    target: ConformanceTarget
    workdir: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def policy(self) -> Path:
        return self.workdir / POLICY_FILE

    def write(
        self,
        access: Mapping[str, Sequence[str]],
        owner_status: str = "active",
        orphan_accounts: str = "report",
    ) -> None:
        """One identity per account (``svc0``, ``svc1``, ... in order), each with its sink."""
        identities = {
            f"{IDENTITY_PREFIX}{i}": {
                "owner": "team",
                "purpose": "conformance",
                "access": [
                    {"target": TARGET, "account": account, "entitlements": list(entitlements)}
                ],
                "credentials": {"sink": f"file:{self.workdir / 'secrets' / f'svc{i}.json'}"},
            }
            for i, (account, entitlements) in enumerate(access.items())
        }
        document: dict[str, Any] = {
            "version": 1,
            "targets": {TARGET: self.target.yaml()},
            "owners": {"team": {"contacts": ["team@example.test"], "status": owner_status}},
            "identities": identities,
            "rules": {"orphan_accounts": orphan_accounts},
        }
        self.policy.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))

    def account_lines(self) -> list[int]:
        """The line of each identity's ``account:``, in the order they were written."""
        lines = self.policy.read_text().splitlines()
        return [n for n, line in enumerate(lines, 1) if line.lstrip().startswith("account:")]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
        proc = subprocess.run(
            [sys.executable, "-m", "lockstep", *args],
            cwd=self.workdir,
            env={**env, **self.target.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        self.outputs += [proc.stdout, proc.stderr]
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def json(self, *args: str) -> Any:
        proc = self(*args, "--json")
        return json.loads(proc.stdout)

    def apply(self) -> list[dict[str, Any]]:
        """Apply, insisting that every action was verified."""
        proc = self("apply", "--yes", "--json")
        results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
        unverified = [r for r in results if r["status"] != "verified"]
        assert proc.returncode == 0 and not unverified, proc.stdout + proc.stderr
        return results

    def credential(self, identity: str = f"{IDENTITY_PREFIX}0") -> Credential:
        sink = json.loads((self.workdir / "secrets" / f"{identity}.json").read_text())
        return Credential(sink["username"], Secret(sink["password"]))

    def assert_no_secret_leaked(self, *issued: Credential) -> None:
        printed = "\n".join(self.outputs)
        state = (self.workdir / ".lockstep" / "state.db").read_bytes()
        secrets = [*(s.reveal() for s in self.target.admin_secrets)]
        secrets += [c.secret.reveal() for c in issued]
        for secret in secrets:
            assert secret not in printed
            assert secret.encode() not in state


@pytest.fixture
def project(conformance_target: ConformanceTarget, tmp_path: Path) -> Project:
    return Project(conformance_target, tmp_path)


def ops(plan: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(a["op"], a["account"], a["entitlement"]) for a in plan["actions"]]
