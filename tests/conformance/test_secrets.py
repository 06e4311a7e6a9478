"""No secret ever shows, for every connector: not in an error (nor anything chained to it, which
a --debug traceback would print), a log line at DEBUG, a repr, or the CLI's output, whatever
fails. Checked once here for all connectors, through each one's real server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from lockstep.connectors.base import (
    ConnectorError,
    HoldsTwoCredentials,
    IssuesLeases,
    Scope,
    TargetUnreachable,
)
from lockstep.secret import Secret, generate_password

if TYPE_CHECKING:
    from conformance.targets import ConformanceTarget, Project

pytest_plugins = ("conformance.targets",)


def assert_never_shown(error: BaseException, secrets: list[Secret]) -> None:
    chain: BaseException | None = error
    while chain is not None:
        text = f"{chain} {chain!r}"
        assert not [s for s in secrets if s.reveal() in text], text
        # Nor did the last-resort redactor have to hide one: none was ever put in.
        assert "***" not in text, text
        chain = chain.__cause__ or chain.__context__


def test_no_secret_shows_in_any_error_log_line_or_repr(
    conformance_target: ConformanceTarget, project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    account, ghost = conformance_target.account, f"{conformance_target.account}2"
    project.write({account: []})
    project.apply()
    old = project.credential()
    secrets = [*conformance_target.admin_secrets, old.secret]
    errors: list[ConnectorError] = []
    caplog.set_level(logging.DEBUG)  # drivers log requests and answers at DEBUG

    with conformance_target.session() as session:

        def fails(attempt: Callable[[Secret], object]) -> None:
            secret = generate_password()
            secrets.append(secret)
            with pytest.raises(ConnectorError) as caught:
                attempt(secret)
            errors.append(caught.value)

        fails(lambda s: session.rotate_credential(ghost, s))
        fails(lambda s: session.restore_account(ghost, s))
        fails(lambda s: session.suspend_account(ghost, s))
        if isinstance(session, HoldsTwoCredentials):
            fails(lambda s: session.add_credential(ghost, s))
            fails(lambda s: session.retire_credential(account, old))  # its only one
        if isinstance(session, IssuesLeases):
            expires_at = datetime.now(UTC) + timedelta(hours=1)
            fails(lambda s: session.issue_lease("not-a-lease", account, frozenset(), s, expires_at))
        new = session.rotate_credential(account, generate_password())
        secrets.append(new.secret)
        shown = f"{new} {new!r} {session.read()!r} {session.read_account(account)!r} {session!r}"

    for error in errors:
        assert_never_shown(error, secrets)
    assert not [s for s in secrets if s.reveal() in shown]
    assert not [s for s in secrets if s.reveal() in caplog.text]
    project.assert_no_secret_leaked(old, new)


def test_wrong_admin_credentials_are_unreachable_and_never_shown(
    conformance_target: ConformanceTarget, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = conformance_target.with_wrong_admin()
    with monkeypatch.context() as env:
        for name, value in wrong.env.items():  # AWS's admin key comes from the environment
            env.setenv(name, value)
        target = wrong.target()
        with pytest.raises(TargetUnreachable) as caught:
            wrong.connector.open(target, Scope(frozenset(), target.exclude))
    assert_never_shown(caught.value, [*wrong.admin_secrets])

    project.target = wrong
    project.write({conformance_target.account: [conformance_target.entitlements[0]]})
    plan = project.json("plan")
    assert (plan["actions"], plan["unreachable"]) == ([], ["conformance"])
    assert [f["type"] for f in plan["findings"]] == ["target_unreachable"]
    assert project("apply", "--yes").returncode == 1
    project.assert_no_secret_leaked()
