"""When AWS last saw an access key or a role used.

IAM records the last use of each access key (``GetAccessKeyLastUsed``) and of each role
(``RoleLastUsed``, included in ``GetAccountAuthorizationDetails``). AWS fills both a while after
the request (hours at worst), so they say "in use recently", not "in use now": right for
dormancy, wrong for anything that needs the last minute.

Cost per pass: one paginated ``ListUsers`` and one ``GetAccountAuthorizationDetails`` for all
roles, then per user one ``ListAccessKeys`` and one ``GetAccessKeyLastUsed`` per key (at most
two): 2 to 3 requests per user, none per role.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from lockstep.connectors.base import Usage

KEY_SOURCE = "iam:access-key-last-used"
ROLE_SOURCE = "iam:role-last-used"


def key_last_used(iam: Any, key_id: str) -> datetime | None:
    answer = iam.get_access_key_last_used(AccessKeyId=key_id)
    last: datetime | None = answer["AccessKeyLastUsed"].get("LastUsedDate")
    return last.astimezone(UTC) if last else None


def users_usage(iam: Any, users: Iterable[tuple[str, str]]) -> Iterator[Usage]:
    """``users`` are (account, user name): the latest use of any of each user's keys."""
    for account, user_name in users:
        keys = iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]
        used = [last for key in keys if (last := key_last_used(iam, key["AccessKeyId"]))]
        if used:
            yield Usage(account, max(used), source=KEY_SOURCE)


def roles_usage(roles: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[Usage]:
    """``roles`` are (account, role detail from GetAccountAuthorizationDetails)."""
    for account, detail in roles:
        last: datetime | None = detail.get("RoleLastUsed", {}).get("LastUsedDate")
        if last is not None:
            yield Usage(account, last.astimezone(UTC), source=ROLE_SOURCE)
