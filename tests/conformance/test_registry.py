"""Connectors are plugins: every entry point in ``lockstep.connectors`` loads, implements the
connector interface, says which admin permissions each operation needs, and a third party's
connector is found the same way as lockstep's own."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from lockstep.connectors.base import ConnectorType, Session, secret_fields
from lockstep.connectors.registry import GROUP, connector_type
from lockstep.model import Op
from lockstep.secret import Secret

if TYPE_CHECKING:
    from conformance.targets import ConformanceTarget, Project

pytest_plugins = ("conformance.targets",)

ENTRY_POINTS = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
NAMES = [ep.name for ep in ENTRY_POINTS]
# A target that keeps no sessions (an LDAP bind lasts one connection) has none to end: the
# operation does nothing there, so it needs no permission. Every other operation changes the
# target and must say what it takes.
MAY_NEED_NOTHING = frozenset({Op.END_SESSIONS})
# The protocol's methods, with the parameters each takes besides self.
PROTOCOL_METHODS = {
    name: list(inspect.signature(member).parameters)[1:]
    for name, member in vars(ConnectorType).items()
    if inspect.isfunction(member) and not name.startswith("_")
}


def test_lockstep_ships_the_four_connectors_and_each_runs_the_conformance_suite() -> None:
    from conformance.targets import ADAPTERS

    ours = {ep.name for ep in ENTRY_POINTS if ep.value.startswith("lockstep.")}
    assert ours == {"postgres", "ldap", "redis", "aws"}
    assert ours <= set(ADAPTERS), "a connector lockstep ships has no conformance adapter"


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_point_loads_a_connector_type_of_its_own_name(name: str) -> None:
    from conformance.targets import CAPABILITIES

    connector = connector_type(name)
    assert connector.name == name
    assert all(isinstance(p, tuple) for p in connector.capability_permissions.values())
    assert set(connector.capability_permissions) <= set(CAPABILITIES)
    assert isinstance(connector.read_permissions, tuple) and connector.read_permissions
    for method, parameters in PROTOCOL_METHODS.items():
        implemented = getattr(connector, method, None)
        assert callable(implemented), f"{name} lacks {method}()"
        assert list(inspect.signature(implemented).parameters) == parameters, method


@pytest.mark.parametrize("name", NAMES)
def test_each_connector_names_a_settings_model(name: str) -> None:
    assert issubclass(connector_type(name).settings_model(), BaseModel)


def test_the_loaded_settings_are_the_connectors_model_with_its_secrets_held_as_secrets(
    conformance_target: ConformanceTarget,
) -> None:
    target = conformance_target.target()
    model = conformance_target.connector.settings_model()
    assert isinstance(target.settings, model)
    assert all(isinstance(getattr(target.settings, f), Secret) for f in secret_fields(model))
    window = conformance_target.connector.propagation_window(target.settings)
    assert isinstance(window, float | int) and window >= 0
    shown = f"{target} {target!r} {target.settings} {target.settings!r}"
    assert not any(secret.reveal() in shown for secret in conformance_target.admin_secrets)


def test_every_operation_a_plan_names_is_a_method_of_each_session(
    conformance_target: ConformanceTarget,
) -> None:
    with conformance_target.session() as session:
        for op in Op:
            implemented = getattr(session, str(op), None)
            assert callable(implemented), f"{conformance_target.type} lacks {op}()"
            wanted = list(inspect.signature(getattr(Session, str(op))).parameters)[1:]
            assert list(inspect.signature(implemented).parameters) == wanted, op


@pytest.mark.parametrize("name", NAMES)
def test_every_operation_declares_the_admin_permissions_it_needs(name: str) -> None:
    permissions = connector_type(name).permissions
    assert set(permissions) == set(Op), f"{name}: operations without a declaration"
    for op, needed in permissions.items():
        assert isinstance(needed, tuple), f"{name} {op}: a tuple of permissions"
        assert all(isinstance(p, str) and p.strip() for p in needed), f"{name} {op}"
        if op not in MAY_NEED_NOTHING:
            assert needed, f"{name} {op} changes the target but declares no permission"


def test_the_plan_lists_the_admin_permissions_its_actions_need(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    granted = conformance_target.entitlements[0]
    project.write({conformance_target.account: [granted]})
    plan = project.json("plan")
    assert [a["op"] for a in plan["actions"]] == ["create_account", "grant"]
    declared = conformance_target.connector.permissions
    needed = sorted({*declared[Op.CREATE_ACCOUNT], *declared[Op.GRANT]})
    assert plan["permissions"] == {"conformance": needed}
    assert "Admin permissions this plan needs:" not in project("plan").stdout
    human = project("plan", "--permissions").stdout
    assert "Admin permissions this plan needs:" in human
    assert all(permission in human for permission in needed)


def test_permissions_lists_what_every_operation_and_capability_needs_offline(
    conformance_target: ConformanceTarget, project: Project
) -> None:
    project.write({conformance_target.account: []})
    project.target = conformance_target.unreachable()  # nothing is contacted
    connector = conformance_target.connector
    shown = project.json("permissions")["conformance"]
    assert shown["type"] == connector.name
    assert shown["read"] == list(connector.read_permissions)
    assert shown["operations"] == {str(op): list(p) for op, p in connector.permissions.items()}
    assert {c: n["permissions"] for c, n in shown["capabilities"].items()} == {
        c.__name__: list(p) for c, p in connector.capability_permissions.items()
    }
    assert all(needs["used_for"] for needs in shown["capabilities"].values())
    human = project("permissions")
    assert human.returncode == 0
    assert f"target conformance ({connector.name})" in human.stdout
    assert all(c.__name__ in human.stdout for c in connector.capability_permissions)


# ---------------------------------------------------------------- a third party's connector

THIRD_PARTY_MODULE = """
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from lockstep.connectors.base import GrammarError, TargetUnreachable
from lockstep.model import Op


class ExampleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: str


class ExampleConnectorType:
    name: ClassVar[str] = "example"
    permissions: ClassVar[dict] = {op: ("example:" + op,) for op in Op}
    read_permissions: ClassVar[tuple] = ("example:read",)
    capability_permissions: ClassVar[dict] = {}
    paths_permissions: ClassVar[tuple] = ("example:read",)

    def settings_model(self):
        return ExampleSettings

    def check_account(self, name):
        if not name.isidentifier():
            raise GrammarError(f"example accounts are identifiers, not {name!r}")

    def parse_entitlement(self, text):
        if not text.startswith("scope:"):
            raise GrammarError(f"{text!r}: example entitlements are scope:NAME")
        return text

    def default_excluded(self, settings):
        return frozenset()

    def propagation_window(self, settings):
        return 0.0

    def open(self, target, scope):
        raise TargetUnreachable(f"{target.name}: the example service is not running")
"""

THIRD_PARTY_POLICY = """\
version: 1
targets:
  widgets:
    type: example
    endpoint: https://widgets.example.test
owners:
  team: {contacts: [team@example.test]}
identities:
  widget-bot:
    owner: team
    purpose: Sort widgets
    access:
      - target: widgets
        account: widget_bot
        entitlements: [ENTITLEMENT]
"""


@pytest.fixture
def third_party(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A connector in a distribution of its own, installed on the path: not lockstep's code."""
    site = tmp_path / "site"
    dist_info = site / "example_connector-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (site / "example_connector.py").write_text(textwrap.dedent(THIRD_PARTY_MODULE))
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: example-connector\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{GROUP}]\nexample = example_connector:ExampleConnectorType\n"
    )
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return project, env


def lockstep(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lockstep", *args],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_a_third_party_connector_validates_policies_with_its_own_grammar(
    third_party: tuple[Path, dict[str, str]],
) -> None:
    project, env = third_party
    policy = project / "lockstep.yaml"
    policy.write_text(THIRD_PARTY_POLICY.replace("ENTITLEMENT", "scope:sort"))
    assert lockstep(project, env, "validate").returncode == 0

    policy.write_text(THIRD_PARTY_POLICY.replace("ENTITLEMENT", "everything"))
    refused = lockstep(project, env, "validate")
    assert refused.returncode == 1
    assert "lockstep.yaml:15: 'everything': example entitlements are scope:NAME" in refused.stderr


def test_a_third_party_connector_is_driven_by_the_engine(
    third_party: tuple[Path, dict[str, str]],
) -> None:
    project, env = third_party
    (project / "lockstep.yaml").write_text(THIRD_PARTY_POLICY.replace("ENTITLEMENT", "scope:sort"))
    plan = json.loads(lockstep(project, env, "plan", "--json").stdout)
    assert (plan["actions"], plan["unreachable"]) == ([], ["widgets"])
    shown = json.loads(lockstep(project, env, "permissions", "--json").stdout)
    assert shown["widgets"]["operations"]["grant"] == ["example:grant"]
    [finding] = plan["findings"]
    assert finding["type"] == "target_unreachable"
    assert "the example service is not running" in finding["detail"]
