"""``lockstep schema`` is right: every example policy of the README and docs/ validates against
it with the ``jsonschema`` package; a key typed wrong fails it where ``validate`` fails; its
durations, shares and times are the strings a policy writes; every connector's settings are
there, one variant per target type."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lockstep.connectors.registry import connector_types
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.jsonschema import policy_json_schema
from lockstep.policy.load import load_policy

ROOT = Path(__file__).resolve().parents[2]
# A fragment shows some keys of a section: every key it shows must be right, but the keys it
# leaves out (an identity's owner, say) are not missing.
FRAGMENT = "version: 1\n# fragment\n"
SECTIONS = {"targets", "owners", "identities", "rules", "audit", "governance"}
BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.DOTALL)
SCHEMA = policy_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class _EditorLoader(yaml.SafeLoader):
    """YAML as an editor's schema check sees it: timestamps stay strings."""


_EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def as_editor_reads(text: str) -> Any:
    return yaml.load(text, Loader=_EditorLoader)  # noqa: S506 - a SafeLoader subclass


def example_policies() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(BLOCK.findall(path.read_text())):
            if re.search(r"^version: 1$", block, re.MULTILINE):
                found.append((f"{path.name}#{i}", block))
            elif block.split(":", 1)[0] in SECTIONS:  # a policy's section, shown alone
                found.append((f"{path.name}#{i}", FRAGMENT + block))
    return found


EXAMPLES = example_policies()


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_there_are_examples_to_check() -> None:
    assert any(name.startswith("README") for name, _ in EXAMPLES)
    assert {"postgres.md", "ldap.md", "redis.md", "aws.md"} <= {
        n.split("#")[0] for n, _ in EXAMPLES
    }


@pytest.mark.parametrize(("name", "text"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_example_policy_validates_against_the_schema(name: str, text: str) -> None:
    errors = sorted(VALIDATOR.iter_errors(as_editor_reads(text)), key=str)
    if text.startswith(FRAGMENT):
        errors = [e for e in errors if e.validator != "required"]
    assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}"


TYPO = """\
version: 1
targets:
  db:
    type: postgres
    dsn: ${DSN}
owners:
  team: {contacts: [a@example.com]}
identities:
  app:
    owner: team
    purpose: test
    access:
      - target: db
        account: app
        entitlments: ["role:r"]
"""


def test_a_typo_in_a_key_fails_the_schema_where_validate_fails(tmp_path: Path) -> None:
    (error,) = VALIDATOR.iter_errors(as_editor_reads(TYPO))
    assert list(error.absolute_path) == ["identities", "app", "access", 0]
    assert "entitlments" in error.message
    path = tmp_path / "lockstep.yaml"
    path.write_text(TYPO)
    with pytest.raises(PolicyInvalid) as info:
        load_policy(path, {"DSN": "postgresql://a@db/x"})
    (found,) = info.value.errors
    assert found.location.line == 15 and "entitlments" in found.message


@pytest.mark.parametrize(
    ("path", "good", "bad"),
    [
        (("identities", "app", "credentials", "rotate_every"), "30d", 30),
        (("identities", "app", "credentials", "rotate_every"), "30d", "0d"),
        (("rules", "mass_change_limit"), "20%", 0.2),
        (("identities", "app", "access", 0, "expires"), "2027-03-31T00:00:00Z", 5),
    ],
)
def test_durations_shares_and_times_are_strings_of_their_grammar(
    path: tuple[Any, ...], good: object, bad: object
) -> None:
    def policy(value: object) -> Any:
        data = as_editor_reads(TYPO.replace("entitlments", "entitlements"))
        data.setdefault("rules", {})
        data["identities"]["app"].setdefault("credentials", {})
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return data

    assert not list(VALIDATOR.iter_errors(policy(good)))
    assert list(VALIDATOR.iter_errors(policy(bad)))


def test_every_connectors_settings_are_a_variant_of_its_own() -> None:
    targets = SCHEMA["properties"]["targets"]["additionalProperties"]
    assert targets["discriminator"] == {"propertyName": "type"}
    variants = {v["properties"]["type"]["const"]: v for v in targets["oneOf"]}
    assert set(variants) == set(connector_types())
    assert {"dsn"} <= set(variants["postgres"]["required"])
    assert {"url", "bind_dn", "bind_password", "accounts_dn", "groups_dn"} <= set(
        variants["ldap"]["required"]
    )
    assert {"url"} <= set(variants["redis"]["required"])
    assert {"region"} <= set(variants["aws"]["required"])
    # A key of another connector is refused, as validate refuses it.
    redis_with_dsn = textwrap.dedent("""\
        version: 1
        targets:
          cache: {type: redis, url: "${URL}", dsn: "${DSN}"}
        """)
    assert list(VALIDATOR.iter_errors(as_editor_reads(redis_with_dsn)))
