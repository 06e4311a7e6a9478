"""Who the people are and what the policy lets each do. Pure: reads the policy only.

People are emails, compared lower-cased. The policy names them as the contacts of active
owners, the members of ``governance.groups``, the ``governance.admins`` and the sponsors of
agents; nobody else gets a token or acts through the API.
"""

from __future__ import annotations

from collections.abc import Iterable

from lockstep.model import GROUP, OWNER, Identity, OwnerStatus, Policy
from lockstep.policy.governance import is_person, normal_person


def named_people(policy: Policy) -> frozenset[str]:
    gov = policy.governance
    people: set[str] = set()
    for owner in policy.owners.values():
        if owner.status is OwnerStatus.ACTIVE:
            people |= {normal_person(c) for c in owner.contacts if is_person(c)}
    for members in gov.groups.values():
        people |= members
    people |= admins(policy)
    people |= {i.sponsor for i in policy.identities.values() if i.sponsor is not None}
    return frozenset(people)


def is_named(policy: Policy, person: str) -> bool:
    return normal_person(person) in named_people(policy)


def admins(policy: Policy) -> frozenset[str]:
    return _resolved(policy, policy.governance.admins, None)


def owner_contacts(policy: Policy, identity: Identity) -> frozenset[str]:
    """The contacts of the identity's owner while the owner is active; nobody otherwise."""
    owner = policy.owners.get(identity.owner)
    if owner is None or owner.status is not OwnerStatus.ACTIVE:
        return frozenset()
    return frozenset(normal_person(c) for c in owner.contacts if is_person(c))


def resolve(policy: Policy, refs: Iterable[str], identity: Identity) -> frozenset[str]:
    """The people ``refs`` (``owner``, ``group:NAME``, emails) stand for, for ``identity``."""
    return _resolved(policy, refs, identity)


def _resolved(policy: Policy, refs: Iterable[str], identity: Identity | None) -> frozenset[str]:
    people: set[str] = set()
    for ref in refs:
        if ref == OWNER:
            if identity is not None:
                people |= owner_contacts(policy, identity)
        elif ref.startswith(GROUP):
            people |= policy.governance.groups.get(ref.removeprefix(GROUP), frozenset())
        else:
            people.add(normal_person(ref))
    return frozenset(people)


def may_request(policy: Policy, person: str, identity: Identity) -> bool:
    """The identity's owner's contacts, its sponsor, and admins may ask access for it."""
    person = normal_person(person)
    return (
        person in owner_contacts(policy, identity)
        or person == identity.sponsor
        or person in admins(policy)
    )
