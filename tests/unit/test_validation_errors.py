"""Validation reports what a person needs to fix, at FILE:LINE, all at once: impossible dates,
tabs, unknown keys (with the likely one), duplicate keys; and YAML aliases cannot make
``validate`` (or the service's reload, which loads the same way) hang or blow up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lockstep.policy.documents import ALIAS_BUDGET
from lockstep.policy.errors import PolicyInvalid
from lockstep.policy.load import load_policy

ENV = {"DSN": "postgresql://admin@db/orders"}
POLICY = """\
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
    purpose: Serve
    access:
      - target: db
        account: app
        entitlements: ["role:readers"]
        expires: 2027-03-31
"""


def errors(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "lockstep.yaml"
    path.write_text(text)
    with pytest.raises(PolicyInvalid) as info:
        load_policy(path, ENV if env is None else env)
    return [f"{e.location.line}: {e.message}" for e in info.value.errors]


def test_an_impossible_date_is_an_error_at_its_line(tmp_path: Path) -> None:
    found = errors(tmp_path, POLICY.replace("2027-03-31", "2027-13-01"))
    assert found == ["16: '2027-13-01' is not a valid date or time: month must be in 1..12"]


def test_the_cli_says_where_an_impossible_date_is_never_internal_error(tmp_path: Path) -> None:
    (tmp_path / "lockstep.yaml").write_text(POLICY.replace("2027-03-31", "2027-02-30"))
    ran = subprocess.run(
        [sys.executable, "-m", "lockstep", "validate"],
        cwd=tmp_path,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1
    assert "lockstep.yaml:16: '2027-02-30' is not a valid date" in ran.stderr
    assert "internal error" not in ran.stderr


def test_a_tab_gets_a_hint(tmp_path: Path) -> None:
    (found,) = errors(tmp_path, POLICY.replace("    owner: team", "\towner: team"))
    assert found.startswith("10: malformed YAML") and "YAML indents with spaces" in found


@pytest.mark.parametrize(
    ("old", "new", "line", "hint"),
    [
        (
            "    purpose: Serve",
            "    purpse: Serve",
            11,
            "unknown key 'purpse' (did you mean 'purpose'?)",
        ),
        ("        entitlements:", "        entitlments:", 15, "(did you mean 'entitlements'?)"),
        ("    dsn: ${DSN}", "    dns: ${DSN}", 5, "unknown key 'dns' (did you mean 'dsn'?)"),
        (
            "    type: postgres",
            "    type: postgres\n    enviroment: prod",
            5,
            "(did you mean 'environment'?)",
        ),
        (
            "identities:",
            "identites:",
            8,
            "unknown section 'identites' (did you mean 'identities'?)",
        ),
    ],
)
def test_an_unknown_key_says_which_was_meant(
    tmp_path: Path, old: str, new: str, line: int, hint: str
) -> None:
    found = errors(tmp_path, POLICY.replace(old, new))
    assert any(e.startswith(f"{line}: ") and hint in e for e in found), found


def test_errors_of_every_stage_are_reported_in_one_run(tmp_path: Path) -> None:
    text = POLICY.replace("    purpose: Serve", "    purpose: Serve\n    purpose: Again")
    text = text.replace("owner: team", "owner: nobody").replace("role:readers", "SELECT on tabel t")
    text = text.replace("2027-03-31", "2027-04-31") + "rules: {orphan_accounts: maybe}\n"
    found = errors(tmp_path, text, env={})
    joined = "\n".join(found)
    for expected in [
        "5: environment variable DSN is not set",
        "10: unknown owner 'nobody'",
        "12: duplicate key 'purpose' (first at line 11, which is used)",
        "16: 'SELECT on tabel t'",
        "17: '2027-04-31' is not a valid date",
        "18: orphan_accounts",
    ]:
        assert expected in joined, joined
    assert len(found) == 6, found  # nothing repeated by a later stage


BOMB = """\
version: 1
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    (tmp_path / "lockstep.yaml").write_text(BOMB)
    # A billion nodes if expanded: the CLI must answer long before a timeout.
    ran = subprocess.run(
        [sys.executable, "-m", "lockstep", "validate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1
    assert f"aliases repeat more than {ALIAS_BUDGET} nodes" in ran.stderr


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    (found,) = errors(tmp_path, "version: 1\nrules: &r {x: *r}\n")
    assert "recursive alias" in found


def test_ordinary_anchors_and_aliases_still_work(tmp_path: Path) -> None:
    text = POLICY.replace(
        'entitlements: ["role:readers"]', 'entitlements: &reading ["role:readers"]'
    )
    text += (
        "  reports:\n"
        "    owner: team\n"
        "    purpose: Report\n"
        "    access: [{target: db, account: reports, entitlements: *reading}]\n"
    )
    path = tmp_path / "lockstep.yaml"
    path.write_text(text)
    policy = load_policy(path, ENV).policy
    assert policy.identities["reports"].access[0].entitlements == {"role:readers"}
