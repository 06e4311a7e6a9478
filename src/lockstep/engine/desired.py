"""The desired state: what the policy and the grants say every managed account should be,
at ``now``. A pure function of the three.

A grant adds its entitlements to an account its identity's policy access declares, until
its ``ends_at``; after that they are to be revoked whatever the rules say (like an expired
access), unless the policy or another live grant still holds them: grants are counted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from lockstep.model import (
    Access,
    Desired,
    DesiredAccount,
    Grant,
    Identity,
    OwnerStatus,
    Policy,
    RuleAction,
)

Key = tuple[str, str]
# One identity's declaration of an account: (identity, whether its owner is active, access).
Declaration = tuple[str, bool, Access]

_NOTHING: frozenset[str] = frozenset()


def desired_state(policy: Policy, now: datetime, grants: Iterable[Grant] = ()) -> Desired:
    active_owners = _active_owners(policy)
    declared: defaultdict[Key, list[Declaration]] = defaultdict(list)
    for identity in policy.identities.values():
        owned = identity.owner in active_owners
        for access in identity.access:
            declared[access.target, access.account].append((identity.name, owned, access))

    suspend_ownerless = policy.rules.ownerless_identities is RuleAction.SUSPEND
    accounts = {
        key: _account(key, found, now, suspend_ownerless) for key, found in declared.items()
    }
    by_account: defaultdict[Key, list[Grant]] = defaultdict(list)
    for grant in grants:
        key = (grant.target, grant.account)
        # A grant counts only on an account its identity's access declares.
        if key in accounts and grant.identity in accounts[key].identities:
            by_account[key].append(grant)
    for key, found in by_account.items():
        accounts[key] = with_grants(accounts[key], found, now)
    return Desired(accounts)


def with_grants(want: DesiredAccount, grants: Iterable[Grant], now: datetime) -> DesiredAccount:
    """``want`` (the policy's) with ``grants`` counted: live ones add, ended ones take away
    what nothing else holds."""
    live: defaultdict[str, list[str]] = defaultdict(list)
    ended: defaultdict[str, list[str]] = defaultdict(list)
    for grant in grants:
        into = live if now < grant.ends_at else ended
        for ent in grant.entitlements:
            into[ent].append(grant.request)
    granted = {e: tuple(sorted(r)) for e, r in live.items() if e not in want.entitlements}
    entitlements = want.entitlements | granted.keys()
    gone = {e: tuple(sorted(r)) for e, r in ended.items() if e not in entitlements}
    return replace(
        want,
        entitlements=frozenset(entitlements),
        expired=(want.expired - entitlements) | gone.keys(),
        granted=granted,
        grant_ended=gone,
    )


def own_access(policy: Policy, identity: Identity, access: Access, now: datetime) -> DesiredAccount:
    """What ``access`` of ``identity`` alone amounts to at ``now``, by the rules the desired
    state applies to every account: what short-lived credentials issued to the identity may
    hold, whoever else shares the account."""
    owned = identity.owner in _active_owners(policy)
    suspend_ownerless = policy.rules.ownerless_identities is RuleAction.SUSPEND
    key = (access.target, access.account)
    return _account(key, [(identity.name, owned, access)], now, suspend_ownerless)


def _active_owners(policy: Policy) -> set[str]:
    return {name for name, owner in policy.owners.items() if owner.status is OwnerStatus.ACTIVE}


def _account(
    key: Key, declarations: list[Declaration], now: datetime, suspend_ownerless: bool
) -> DesiredAccount:
    live: list[frozenset[str]] = []
    gone: list[frozenset[str]] = []
    for _, _, access in declarations:
        expired = access.expires is not None and access.expires <= now
        (gone if expired else live).append(access.entitlements)
    entitlements = _union(live)
    # A shared account stays owned while any of its identities has an active owner.
    ownerless = not any(owned for _, owned, _ in declarations)
    all_expired = not live
    reason = None
    if all_expired:
        reason = "all access expired"
    elif ownerless and suspend_ownerless:
        reason = "owner departed"
    return DesiredAccount(
        target=key[0],
        account=key[1],
        identities=tuple(sorted({name for name, _, _ in declarations})),
        entitlements=entitlements,
        expired=_union(gone) - entitlements if gone else _NOTHING,
        active=reason is None,
        suspend_reason=reason,
        ownerless=ownerless,
        all_expired=all_expired,
    )


def _union(sets: list[frozenset[str]]) -> frozenset[str]:
    # Most accounts are declared once: they share their access's immutable set instead of a
    # copy, which at 100k accounts saves a set per account in memory and in GC passes.
    return sets[0] if len(sets) == 1 else frozenset().union(*sets)
