"""The desired state: what the policy says every managed account should be, at ``now``."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from lockstep.model import Desired, DesiredAccount, OwnerStatus, Policy, RuleAction


def desired_state(policy: Policy, now: datetime) -> Desired:
    live: dict[tuple[str, str], set[str]] = defaultdict(set)
    expired: dict[tuple[str, str], set[str]] = defaultdict(set)
    has_live: set[tuple[str, str]] = set()
    identities: dict[tuple[str, str], list[str]] = defaultdict(list)
    vouched: set[tuple[str, str]] = set()  # some declaring identity has an active owner

    for identity in policy.identities.values():
        owner = policy.owners.get(identity.owner)
        owned = owner is not None and owner.status is OwnerStatus.ACTIVE
        for access in identity.access:
            key = (access.target, access.account)
            if identity.name not in identities[key]:
                identities[key].append(identity.name)
            if owned:
                vouched.add(key)
            if access.expires is not None and access.expires <= now:
                expired[key] |= access.entitlements
            else:
                live[key] |= access.entitlements
                has_live.add(key)

    suspend_ownerless = policy.rules.ownerless_identities is RuleAction.SUSPEND
    accounts = {}
    for key, names in identities.items():
        # A shared account stays owned while any of its identities has an active owner.
        ownerless = key not in vouched
        all_expired = key not in has_live
        reason = None
        if all_expired:
            reason = "all access expired"
        elif ownerless and suspend_ownerless:
            reason = "owner departed"
        accounts[key] = DesiredAccount(
            target=key[0],
            account=key[1],
            identities=tuple(sorted(names)),
            entitlements=frozenset(live[key]),
            expired=frozenset(expired[key] - live[key]),
            active=reason is None,
            suspend_reason=reason,
            ownerless=ownerless,
            all_expired=all_expired,
        )
    return Desired(accounts)
