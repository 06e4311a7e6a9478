"""A private moto server (AWS API emulator) on 127.0.0.1 with authentication enforced.

moto accepts any credentials until told otherwise, which would make every probe "accepted".
So the launcher bootstraps an admin user with an allow-everything inline policy and an access
key while enforcement is off, then turns enforcement on: from there an unknown or deleted key
is refused (InvalidClientTokenId) and an action outside a policy is denied.

moto does NOT check a key's Active/Inactive status nor the expiry of STS credentials; tests
that rely on those must check state instead (see docs/aws.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
import pytest

from lockstep.connectors.aws.grammar import AwsSettings
from lockstep.model import Target
from lockstep.secret import Secret
from services.process import (
    ServerProcess,
    ServerUnavailable,
    free_port,
    start_or_unavailable,
    temp_dir,
)

REGION = "us-east-1"
ADMIN_USER = "lockstep-admin"
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
# Variables through which a developer's own AWS setup could leak into the tests.
_AMBIENT_AWS_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_STS",
)


class MotoServerError(ServerUnavailable):
    pass


@dataclass
class MotoServer(ServerProcess):
    """A running moto server. ``secret_access_key`` is the admin's: treat it as a secret."""

    endpoint_url: str
    region: str = REGION
    admin_user: str = ADMIN_USER
    access_key_id: str = field(default="", init=False)
    secret_access_key: Secret = field(default_factory=lambda: Secret(""), init=False)

    name = "moto-server"
    error = MotoServerError

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own http://127.0.0.1 endpoint
                self.endpoint_url + "/moto-api/", timeout=1
            ) as response:
                response.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True

    def _post(self, path: str, body: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 endpoint
            self.endpoint_url + path,
            data=body,
            method="POST",
            # moto answers a form-encoded body with a 500
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def _set_auth(self, enforced: bool) -> None:
        # The body is how many requests moto lets through unauthenticated before enforcing.
        self._post("/moto-api/reset-auth", b"0" if enforced else b"inf")

    def reset(self) -> None:
        """Wipe every resource, then bootstrap a fresh admin and enforce authentication."""
        self._set_auth(enforced=False)
        self._post("/moto-api/reset", b"")
        self._bootstrap_admin()
        self._set_auth(enforced=True)

    def _bootstrap_admin(self) -> None:
        # Any credentials do while enforcement is off; the key minted here is the admin's.
        iam = self.client("iam", "bootstrap", Secret("bootstrap"))
        iam.create_user(UserName=self.admin_user)
        iam.put_user_policy(
            UserName=self.admin_user, PolicyName="administrator", PolicyDocument=_ALLOW_ALL
        )
        key = iam.create_access_key(UserName=self.admin_user)["AccessKey"]
        self.access_key_id = key["AccessKeyId"]
        self.secret_access_key = Secret(key["SecretAccessKey"])

    def client(self, service: str, key_id: str | None = None, secret: Secret | None = None) -> Any:
        """A boto3 client signed with the given key, by default the admin's."""
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=key_id or self.access_key_id,
            aws_secret_access_key=(secret or self.secret_access_key).reveal(),
        )


def start(timeout_s: float = 30.0) -> MotoServer:
    """Start a moto server subprocess, bootstrap its admin and enforce authentication."""
    missing = [m for m in ("moto", "flask") if importlib.util.find_spec(m) is None]
    if missing:
        raise MotoServerError(f"moto[server] is not installed (missing: {', '.join(missing)})")
    port = free_port()
    server = MotoServer(
        temp_dir("moto"),
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        endpoint_url=f"http://127.0.0.1:{port}",
    )
    server.launch(timeout_s)
    try:
        server.reset()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_or_unavailable(start)
    yield server
    server.stop()


@pytest.fixture
def aws_target(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Target:
    """An ``aws`` target on the shared server, wiped and re-bootstrapped for this test.

    The admin key reaches the connector the way it does in production: through the standard
    AWS environment variables. Nothing from the developer's own AWS setup can leak in.
    """
    moto_server.reset()
    for var in _AMBIENT_AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_server.secret_access_key.reveal())
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return Target(
        name="aws-test",
        type="aws",
        environment="test",
        exclude=frozenset(),
        legacy=False,
        # moto forgets a deleted key at once: no propagation window to wait out.
        settings=AwsSettings(
            region=moto_server.region,
            endpoint_url=moto_server.endpoint_url,
            propagation_window=0.0,
        ),
    )
