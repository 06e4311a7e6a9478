"""How lockstep talks to AWS: the client configuration, botocore's errors turned into the
connector's with messages fit to show a user, and the log filter that keeps secrets out of
botocore's DEBUG logs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore import exceptions as aws_errors  # type: ignore[import-untyped,unused-ignore]
from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]

from lockstep.connectors.base import ConnectorError, TargetUnreachable
from lockstep.secret import redact

# Error codes with which AWS refuses a credential: the server answered, so the verdict is sure.
REFUSALS = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "AuthFailure",
        "ExpiredToken",
    }
)

# Real AWS answers in well under a second; a stuck endpoint must surface as unreachable fast,
# not after botocore's default 60 s timeouts times its retries.
BOTO_CONFIG = Config(
    connect_timeout=5,
    read_timeout=5,
    # Adaptive: standard retries with backoff, and a client-side rate that slows down when
    # IAM throttles (batches make many calls at once).
    retries={"max_attempts": 3, "mode": "adaptive"},
    user_agent_extra="lockstep",
)

_CREDENTIALS_HINT = (
    "admin credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
)


def code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def message(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


@contextmanager
def boto_errors(what: str, failure: type[ConnectorError]) -> Iterator[None]:
    """Turn botocore's exceptions into the connector's, with messages fit to show a user.

    ``failure`` is what an AWS refusal means here: ActionFailed for a change, TargetUnreachable
    for a read (an unreadable target must yield no verdict). Not reaching AWS is always
    TargetUnreachable. AWS error texts carry no secret; ``redact`` is the last line anyway.
    """
    try:
        yield
    except aws_errors.ClientError as exc:
        raise failure(redact(f"{what}: {code(exc)}: {message(exc)}")) from exc
    except (aws_errors.ParamValidationError, aws_errors.ValidationError) as exc:
        raise failure(redact(f"{what}: {exc}")) from exc
    except aws_errors.NoCredentialsError as exc:
        raise TargetUnreachable(f"{what}: {exc} ({_CREDENTIALS_HINT})") from exc
    except (aws_errors.ConnectionError, aws_errors.HTTPClientError) as exc:
        raise TargetUnreachable(redact(f"{what}: cannot reach AWS: {exc}")) from exc
    except aws_errors.BotoCoreError as exc:  # credentials or configuration that cannot be loaded
        raise TargetUnreachable(redact(f"{what}: {exc}")) from exc


def absent_is_none(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except aws_errors.ClientError as exc:
        if code(exc) == "NoSuchEntity":
            return None
        raise


# The secrets in an XML (query protocol) or a JSON response body.
_SECRET_FIELDS = ("SecretAccessKey", "SessionToken")
_SECRET_IN_BODY = re.compile(
    r'(<(?:SecretAccessKey|SessionToken)>|"(?:SecretAccessKey|SessionToken)":\s*")[^<"]*'
)
# Where botocore logs secrets at DEBUG: response bodies (parsers), and the session token a
# request is signed with (endpoint: the request's headers; auth: the canonical request).
LOGGERS_WITH_SECRETS = ("botocore.parsers", "botocore.endpoint", "botocore.auth")


class _ScrubSecrets(logging.Filter):
    """CreateAccessKey's and AssumeRole's response bodies hold new secrets before lockstep has
    even seen (and registered) them: those are masked by field name. A token lockstep already
    holds as a ``Secret`` is masked wherever it appears."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(arg) for arg in record.args)
        return True


def _scrub(value: object) -> object:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    cleaned = redact(text)
    if any(field in cleaned for field in _SECRET_FIELDS):
        cleaned = _SECRET_IN_BODY.sub(r"\1***", cleaned)
    return value if cleaned == text else cleaned


SCRUBBER = _ScrubSecrets()
