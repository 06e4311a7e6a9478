"""The policy's ``governance:`` section and ``rules.sod``, from validated specs to model
objects, with the checks that need more than one element: groups named by approvers and
admins exist, environments named by approvals exist, each sod entitlement is a known target's
and in its connector's grammar, and no identity's declared access breaks a sod rule."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lockstep.connectors.base import ConnectorType, GrammarError
from lockstep.model import (
    DEFAULT_ENVIRONMENT,
    DEFAULT_PENDING_EXPIRY_S,
    GROUP,
    OWNER,
    Governance,
    Location,
    PeopleIssuer,
    SignInClient,
    SodRule,
    Stage,
    Target,
)
from lockstep.policy.documents import PathKey
from lockstep.policy.errors import PolicyError
from lockstep.policy.hosts import is_loopback
from lockstep.policy.schema import GovernanceSpec, PeopleSpec, SodSpec
from lockstep.secret import Secret

# People are emails. Nothing stricter is checked (an IdP decides what its addresses look like),
# but nothing that could pass for a group reference, a list or a command either.
_PERSON = re.compile(r"^[^@\s,;:/\"'<>]+@[^@\s,;:/\"'<>]+\.[^@\s,;:/\"'<>]+$")

Locate = Callable[[PathKey], Location]


def is_person(text: str) -> bool:
    return bool(_PERSON.match(text))


def normal_person(text: str) -> str:
    """Emails compare case-insensitively: the one form kept and compared."""
    return text.strip().lower()


def build_governance(
    spec: GovernanceSpec,
    locate: Locate,
    environments: Collection[str],
    base_dir: Path,
    errors: list[PolicyError],
) -> Governance:
    def error(path: PathKey, message: str) -> None:
        errors.append(PolicyError(locate(path), message))

    groups: dict[str, frozenset[str]] = {}
    for name, members in spec.groups.items():
        for i, member in enumerate(members):
            if not is_person(member):
                error(("groups", name, i), f"group {name!r}: {member!r} is not an email")
        groups[name] = frozenset(normal_person(m) for m in members)

    def reference(path: PathKey, text: str, owner_allowed: bool) -> str | None:
        if text.startswith(GROUP):
            group = text.removeprefix(GROUP)
            if group not in groups:
                error(path, f"unknown group {group!r}" + _known(groups))
                return None
            return text
        if text == OWNER and owner_allowed:
            return text
        if not is_person(text):
            allowed = "owner, group:NAME or an email" if owner_allowed else "group:NAME or an email"
            error(path, f"{text!r} is not {allowed}")
            return None
        return normal_person(text)

    admins = tuple(
        ref
        for i, text in enumerate(spec.admins)
        if (ref := reference(("admins", i), text, owner_allowed=False)) is not None
    )
    approvals: dict[str, tuple[Stage, ...]] = {DEFAULT_ENVIRONMENT: (Stage((OWNER,), 1),)}
    if spec.approvals is not None:
        approvals = {}
        for env, stages in spec.approvals.items():
            _check_environment(("approvals", env), env, environments, error)
            built = []
            for i, stage in enumerate(stages):
                refs = tuple(
                    ref
                    for j, text in enumerate(stage.approvers)
                    if (ref := reference(("approvals", env, i, "approvers", j), text, True))
                    is not None
                )
                _check_required(
                    ("approvals", env, i, "required"), refs, stage.required, groups, error
                )
                built.append(Stage(refs, stage.required))
            approvals[env] = tuple(built)
    for env in spec.max_duration:
        _check_environment(("max_duration", env), env, environments, error)
    people = None
    if spec.people is not None:
        p = spec.people
        jwks = p.jwks
        if jwks is not None and not jwks.startswith("file:"):
            from lockstep.leases.workload import KeySourceError, parse_key_source

            try:
                parse_key_source(f"{p.issuer}={jwks}")
            except KeySourceError as exc:
                error(("people", "jwks"), str(exc).removeprefix("--jwks "))
        elif jwks is not None and not Path(jwks.removeprefix("file:")).is_absolute():
            jwks = f"file:{(base_dir / jwks.removeprefix('file:')).resolve()}"
        people = PeopleIssuer(p.issuer, p.audience, p.claim, jwks, _client(p, error))
    return Governance(
        people=people,
        groups=groups,
        admins=admins,
        approvals=approvals,
        max_duration_s=dict(spec.max_duration),
        pending_expires_after_s=spec.pending_expires_after or DEFAULT_PENDING_EXPIRY_S,
    )


CALLBACK_PATH = "/signin/oidc/callback"


def _client(p: PeopleSpec, error: Callable[[PathKey, str], None]) -> SignInClient | None:
    """The dashboard's OIDC client, when ``client_id`` names one."""
    if p.client_id is None:
        for key in ("client_secret", "redirect_uri"):
            if getattr(p, key) is not None:
                error(("people", key), f"{key} without client_id: name the client first")
        return None
    if p.redirect_uri is None:
        error(("people", "client_id"), "client_id needs redirect_uri: where the issuer sends "
              f"people back (this service's {CALLBACK_PATH})")  # fmt: skip
        return None
    why = _redirect_problem(p.redirect_uri)
    if why is not None:
        error(("people", "redirect_uri"), why)
    if p.client_secret is not None and p.client_secret.startswith("file:"):
        error(("people", "client_secret"), "client_secret: pass it as ${VAR}")
    if "openid" not in p.scopes:
        error(("people", "scopes"), "scopes must include openid")
    secret = None if p.client_secret is None else Secret(p.client_secret)
    return SignInClient(p.client_id, secret, p.redirect_uri, tuple(p.scopes))


def _redirect_problem(uri: str) -> str | None:
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
    except ValueError:
        return f"redirect_uri {uri!r} is not a URL"
    if parts.scheme not in ("https", "http") or not host:
        return f"redirect_uri {uri!r} is not an absolute http(s) URL"
    if parts.scheme == "http" and not is_loopback(host):
        return f"redirect_uri {uri!r}: use https (http only on loopback)"
    if parts.query or parts.fragment:
        return f"redirect_uri {uri!r} has a query or fragment: the issuer must match it exactly"
    if not parts.path.endswith(CALLBACK_PATH):
        return f"redirect_uri {uri!r} must end with {CALLBACK_PATH}, where the dashboard answers"
    return None


def _check_environment(
    path: PathKey, env: str, environments: Collection[str], error: Callable[[PathKey, str], None]
) -> None:
    if env != DEFAULT_ENVIRONMENT and env not in environments:
        known = sorted({*environments, DEFAULT_ENVIRONMENT})
        error(path, f"no target or identity is in environment {env!r} (known: {', '.join(known)})")


def _check_required(
    path: PathKey,
    refs: tuple[str, ...],
    required: int,
    groups: Mapping[str, frozenset[str]],
    error: Callable[[PathKey, str], None],
) -> None:
    """A stage that names its approvers (no ``owner``) must name enough of them."""
    if OWNER in refs:
        return
    people: set[str] = set()
    for ref in refs:
        people |= (
            groups.get(ref.removeprefix(GROUP), frozenset()) if ref.startswith(GROUP) else {ref}
        )
    if required > len(people):
        error(path, f"{required} approvals required, but only {len(people)} people can give them")


def build_sod(
    specs: list[SodSpec],
    locate: Locate,
    targets: Mapping[str, Target],
    connectors: Mapping[str, ConnectorType],
    errors: list[PolicyError],
) -> tuple[SodRule, ...]:
    rules = []
    names: dict[str, Location] = {}
    for i, spec in enumerate(specs):
        here = locate(("sod", i))
        if spec.name in names:
            message = f"sod rule {spec.name!r} is defined twice: here and at {names[spec.name]}"
            errors.append(PolicyError(locate(("sod", i, "name")), message))
            continue
        names[spec.name] = here
        held: list[tuple[str, str]] = []
        ok = True
        for j, text in enumerate(spec.entitlements):
            parsed = _sod_entitlement(text, targets, connectors)
            where = locate(("sod", i, "entitlements", j))
            if isinstance(parsed, str):
                errors.append(PolicyError(where, f"sod rule {spec.name!r}: {parsed}"))
                ok = False
            elif parsed in held:
                errors.append(PolicyError(where, f"sod rule {spec.name!r} names {text!r} twice"))
                ok = False
            else:
                held.append(parsed)
        if ok:
            rules.append(SodRule(spec.name, tuple(held), spec.within, here))
    return tuple(rules)


def _sod_entitlement(
    text: str, targets: Mapping[str, Target], connectors: Mapping[str, ConnectorType]
) -> tuple[str, str] | str:
    """(target, canonical entitlement), or why not. Target names may hold '/', and so may
    entitlements (an ARN): the longest target name that prefixes the text wins."""
    matches = [t for t in targets if text.startswith(t + "/")]
    if not matches:
        return f"{text!r}: write TARGET/ENTITLEMENT with a known target" + _known(targets)
    target = max(matches, key=len)
    connector = connectors.get(target)
    if connector is None:
        return f"{text!r}: target {target!r} is invalid"
    try:
        return target, connector.parse_entitlement(text[len(target) + 1 :])
    except GrammarError as exc:
        return f"{text!r}: {exc}"


@dataclass(frozen=True)
class Declared:
    """Where an identity's policy declares one entitlement on one target."""

    identity: str
    target: str
    entitlement: str
    location: Location


def policy_conflicts(rules: Iterable[SodRule], declared: Iterable[Declared]) -> list[PolicyError]:
    """Identities whose declared access itself holds two entitlements of one sod rule."""
    by_identity: dict[str, dict[tuple[str, str], Location]] = {}
    for d in declared:
        by_identity.setdefault(d.identity, {}).setdefault((d.target, d.entitlement), d.location)
    errors = []
    for rule in rules:
        for identity, held in sorted(by_identity.items()):
            found = [(e, held[e]) for e in rule.entitlements if e in held]
            if len(found) < 2:
                continue
            (first, first_at), (second, second_at) = found[0], found[1]
            errors.append(
                PolicyError(
                    second_at,
                    f"identity {identity!r} breaks sod rule {rule.name!r}: it declares "
                    f"{first[0]}/{first[1]} (at {first_at}) and {second[0]}/{second[1]}",
                )
            )
    return errors


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return f" (known: {', '.join(listed)})" if listed else " (none defined)"
