"""Policy files -> ``model.Policy``, validated in stages, every error with file and line.

1. structure: YAML syntax, duplicate keys, top-level sections, one definition per name;
2. environment: ``${VAR}`` expansion and the refusal of literal secrets;
3. schema: each element against its pydantic model;
4. meaning: cross-references (owners, targets) and each target's connector grammar
   (target keys, account names, entitlements).
Every stage runs as far as it can, so one run reports all errors at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lockstep.connectors.base import ChecksTransport, ConnectorType, GrammarError, secret_fields
from lockstep.connectors.registry import UnknownConnector, connector_type
from lockstep.model import (
    DEFAULT_CHECKPOINT_INTERVAL_S,
    DEFAULT_INTERVAL_S,
    LEGACY_INTERVAL_S,
    LEGACY_MAX_CREDENTIAL_AGE_S,
    Access,
    AuditSettings,
    CredentialPolicy,
    Identity,
    IdentityKind,
    Location,
    Owner,
    Policy,
    RuleAction,
    Rules,
    SodRule,
    Target,
    Workload,
)
from lockstep.policy.documents import PathKey, load_documents
from lockstep.policy.elements import (
    Element,
    expand_element,
    locate_path,
    locator,
    merge,
    pydantic_error,
    validate,
    validate_all,
)
from lockstep.policy.errors import PolicyError, PolicyInvalid
from lockstep.policy.governance import (
    Declared,
    build_governance,
    build_sod,
    is_person,
    normal_person,
    policy_conflicts,
)
from lockstep.policy.reviews import agent_errors, agent_lease_max_ttl, notify, review_rules
from lockstep.policy.schema import (
    AuditSpec,
    GovernanceSpec,
    IdentitySpec,
    OwnerSpec,
    RulesSpec,
    TargetSpec,
)

DEFAULT_FILE = "lockstep.yaml"


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    files: tuple[Path, ...]
    base_dir: Path  # where relative paths (state, file: secrets) are resolved
    locations: Mapping[tuple[str, str], Location]  # (section, name) -> where it is defined
    sinks: Mapping[str, Location] = field(default_factory=dict)  # identity -> its sink's line
    # (identity, target, canonical entitlement) -> where the identity's access declares it
    entitlement_places: Mapping[tuple[str, str, str], Location] = field(default_factory=dict)


def policy_files(config: Path) -> list[Path]:
    """The policy file, or a directory's visible ``*.yaml`` and ``*.yml`` files (an editor's
    ``.#lockstep.yaml`` or a hidden draft is never merged in)."""
    if config.is_dir():
        found = [*config.glob("*.yaml"), *config.glob("*.yml")]
        return sorted(p for p in found if not p.name.startswith(".") and p.is_file())
    return [config]


def load_policy(
    config: Path, env: Mapping[str, str] | None = None, *, offline: bool = False
) -> LoadedPolicy:
    """Raise PolicyInvalid with every error found, or return the policy.

    ``offline`` (``validate --offline``, ``permissions``): no secret is needed. A ``${VAR}``
    that is not set, and a ``file:`` secret, are not read; everything else is checked. The
    policy returned then holds targets whose settings were not validated where they depend
    on what was not read: fit for reporting, never for connecting."""
    env = os.environ if env is None else env
    errors: list[PolicyError] = []
    deferred: set[PathKey] | None = set() if offline else None
    files = policy_files(config)
    if not files:
        raise PolicyInvalid([PolicyError(Location(str(config), 1), "no *.yaml policy files here")])
    docs = load_documents(files, errors)
    sections, singles = merge(docs, errors)
    expanded = {
        section: {name: expand_element(el, env, errors, deferred) for name, el in elements.items()}
        for section, elements in sections.items()
    }
    single = {key: expand_element(el, env, errors, deferred) for key, el in singles.items()}
    rules_el, audit_el, gov_el = single.get("rules"), single.get("audit"), single.get("governance")
    # A value the environment could not supply fails again in the schema (empty, say): that
    # error depends on the first one and would only repeat it.
    unsupplied = {e.location for e in errors}
    unsupplied |= {locate_path(sections, singles, path) for path in deferred or ()}
    early = len(errors)
    target_specs = validate_all(TargetSpec, expanded["targets"], errors)
    owner_specs = validate_all(OwnerSpec, expanded["owners"], errors)
    identity_specs = validate_all(IdentitySpec, expanded["identities"], errors)
    rules_spec = validate(RulesSpec, rules_el, errors) if rules_el else RulesSpec()
    audit_spec = validate(AuditSpec, audit_el, errors) if audit_el else AuditSpec()
    gov_spec = validate(GovernanceSpec, gov_el, errors) if gov_el else GovernanceSpec()
    base_dir = config if config.is_dir() else config.parent
    builder = _Builder(expanded, base_dir, errors, deferred)
    targets = {
        name: target
        for name, spec in target_specs.items()
        if (target := builder.target(name, spec)) is not None
    }
    owners = {name: Owner(name, tuple(s.contacts), s.status) for name, s in owner_specs.items()}
    identities = {
        name: builder.identity(name, spec, targets, owners) for name, spec in identity_specs.items()
    }
    sod: tuple[SodRule, ...] = ()
    if rules_spec is not None and rules_el is not None:
        sod = build_sod(rules_spec.sod, locator(rules_el), targets, builder.connectors, errors)
        errors.extend(policy_conflicts(sod, builder.declared))
    environments = {t.environment for t in targets.values()} | {
        i.environment for i in identities.values()
    }
    known_envs = {e for e in environments if e is not None}

    def at_top(_: object) -> Location:
        return Location(str(config), 1)

    governance = None
    if gov_spec is not None:
        locate = locator(gov_el) if gov_el is not None else at_top
        governance = build_governance(gov_spec, locate, known_envs, base_dir, errors)
        governance = replace(governance, notify=notify(gov_spec.notify, locate, errors))
    reviews = None
    if rules_spec is not None:
        locate = locator(rules_el) if rules_el is not None else at_top
        reviews = review_rules(rules_spec, locate, known_envs, errors)
    errors[early:] = [e for e in errors[early:] if e.location not in unsupplied]
    if errors:
        raise PolicyInvalid(errors)
    assert rules_spec is not None and audit_spec is not None  # else raised above
    assert governance is not None and reviews is not None
    review_every, review_grace, unreviewed = reviews
    rules = replace(
        _rules(rules_spec),
        sod=sod,
        review_every_s=review_every,
        review_grace_s=review_grace,
        unreviewed=unreviewed,
    )
    policy = Policy(
        targets,
        owners,
        identities,
        rules,
        _audit(audit_spec, base_dir),
        governance,
    )
    locations = {
        (section, name): el.location
        for section, els in sections.items()
        for name, el in els.items()
    }
    places = {(d.identity, d.target, d.entitlement): d.location for d in builder.declared}
    return LoadedPolicy(policy, tuple(files), base_dir, locations, builder.sinks, places)


class _Builder:
    """Turns validated specs into model objects, checking what needs a connector."""

    def __init__(
        self,
        elements: dict[str, dict[str, Element]],
        base_dir: Path,
        errors: list[PolicyError],
        deferred: set[PathKey] | None = None,
    ) -> None:
        self.elements = elements
        self.deferred = deferred
        self.sinks: dict[str, Location] = {}
        self.base_dir = base_dir
        self.errors = errors
        self.connectors: dict[str, ConnectorType] = {}
        self.declared: list[Declared] = []  # each identity's entitlements, where written

    def _at(self, section: str, name: str, *sub: str | int) -> Location:
        el = self.elements[section][name]
        return el.doc.locate((*el.path, *sub))

    def _error(self, location: Location, message: str) -> None:
        self.errors.append(PolicyError(location, message))

    def target(self, name: str, spec: TargetSpec) -> Target | None:
        try:
            connector = connector_type(spec.type)
        except UnknownConnector as exc:
            self._error(self._at("targets", name, "type"), str(exc))
            return None
        self.connectors[name] = connector
        raw = dict(spec.model_extra or {})
        model = connector.settings_model()
        unread = self._unread(name, raw, secret_fields(model))
        for key in secret_fields(model) & raw.keys() - unread:
            if isinstance(raw[key], str):
                revealed = self._read_secret(raw[key], self._at("targets", name, key))
                if revealed is None:
                    return None
                raw[key] = revealed
        el = Element(self.elements["targets"][name].doc, self.elements["targets"][name].path, raw)
        if unread:
            return self._offline_target(name, spec, model, el, unread)
        settings = validate(model, el, self.errors, also=TargetSpec.model_fields)
        if settings is None:
            return None
        try:
            excluded = frozenset(spec.manage.exclude) | connector.default_excluded(settings)
        except (ValueError, GrammarError) as exc:
            self._error(self._at("targets", name), f"cannot read the admin account: {exc}")
            return None
        return self._target(name, spec, settings, excluded)

    def _unread(self, name: str, raw: Mapping[str, Any], secrets: frozenset[str]) -> set[str]:
        """Offline: the target's keys whose value was not read (an unset variable, or a
        ``file:`` secret)."""
        if self.deferred is None:
            return set()
        unread = {str(p[2]) for p in self.deferred if p[:2] == ("targets", name) and len(p) > 2}
        files = {k for k in secrets & raw.keys() if str(raw[k]).startswith("file:")}
        return unread | files

    def _offline_target(
        self,
        name: str,
        spec: TargetSpec,
        model: type[BaseModel],
        el: Element,
        unread: set[str],
    ) -> Target | None:
        """A target whose settings depend on values not read offline: every other key is
        validated, and the admin (whose name may be among them) is not known."""
        known = {k: v for k, v in el.raw.items() if k not in unread}
        try:
            model.model_validate(known)
        except ValidationError as exc:
            for err in exc.errors():
                if not err["loc"] or str(err["loc"][0]) not in unread:
                    self.errors.append(
                        pydantic_error(el, tuple(err["loc"]), err["msg"], err["type"])
                    )
        settings = model.model_construct(**el.raw)
        return self._target(name, spec, settings, frozenset(spec.manage.exclude), read=False)

    def _target(
        self,
        name: str,
        spec: TargetSpec,
        settings: BaseModel,
        excluded: frozenset[str],
        read: bool = True,
    ) -> Target:
        """``read``: the settings were read and validated whole (not offline), so the
        connector can tell whether its connection travels in clear."""
        interval = spec.interval or (LEGACY_INTERVAL_S if spec.legacy else DEFAULT_INTERVAL_S)
        max_age = spec.max_credential_age or (LEGACY_MAX_CREDENTIAL_AGE_S if spec.legacy else None)
        insecure = None
        connector = self.connectors.get(name)
        if read and isinstance(connector, ChecksTransport):
            insecure = connector.insecure_transport(settings)
        return Target(
            name,
            spec.type,
            spec.environment,
            excluded,
            spec.legacy,
            settings,
            interval,
            max_age,
            insecure,
        )

    def _read_secret(self, value: str, where: Location) -> str | None:
        """The secret itself: a ``file:PATH`` is read (relative to the policy)."""
        if not value.startswith("file:"):
            return value
        path = Path(value.removeprefix("file:")).expanduser()
        path = path if path.is_absolute() else self.base_dir / path
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            self._error(where, f"cannot read secret file {path}: {exc.strerror}")
            return None

    def identity(
        self,
        name: str,
        spec: IdentitySpec,
        targets: Mapping[str, Target],
        owners: Mapping[str, Owner],
    ) -> Identity:
        if spec.owner not in owners:
            self._error(
                self._at("identities", name, "owner"),
                f"unknown owner {spec.owner!r}" + _known(owners),
            )
        access = tuple(
            a
            for i, item in enumerate(spec.access)
            if (a := self._access(name, i, item.model_dump(), targets)) is not None
        )
        sink = spec.credentials.sink
        if sink is not None:
            from lockstep.credentials.sinks import beside

            self._check_sink(name, sink, access)
            sink = beside(sink, self.base_dir)
        sponsor = spec.sponsor
        if sponsor is not None and not is_person(sponsor):
            self._error(self._at("identities", name, "sponsor"), f"{sponsor!r} is not an email")
        self.errors.extend(agent_errors(spec, lambda *sub: self._at("identities", name, *sub)))
        lease_max_ttl = spec.credentials.lease_max_ttl
        if spec.kind is IdentityKind.AGENT:
            lease_max_ttl = agent_lease_max_ttl(lease_max_ttl)
        return Identity(
            name=name,
            owner=spec.owner,
            purpose=spec.purpose,
            environment=spec.environment,
            access=access,
            credentials=CredentialPolicy(
                spec.credentials.rotate_every,
                sink,
                spec.credentials.lease_ttl,
                lease_max_ttl,
                spec.credentials.max_live_leases,
            ),
            workload=_workload(spec),
            kind=spec.kind,
            sponsor=normal_person(sponsor) if sponsor is not None else None,
        )

    def _access(
        self, identity: str, i: int, item: dict[str, Any], targets: Mapping[str, Target]
    ) -> Access | None:
        where = ("access", i)
        target = targets.get(item["target"])
        if target is None:
            if item["target"] not in self.elements["targets"]:
                self._error(
                    self._at("identities", identity, *where, "target"),
                    f"unknown target {item['target']!r}" + _known(self.elements["targets"]),
                )
            elif item["target"] in self.connectors:
                # The target's own settings failed; its grammar does not depend on them.
                self._grammar(identity, where, item, self.connectors[item["target"]])
            return None
        connector = self.connectors[target.name]
        account = item["account"]
        ok = True
        try:
            connector.check_account(account)
        except GrammarError as exc:
            self._error(self._at("identities", identity, *where, "account"), str(exc))
            ok = False
        if account in target.exclude:
            self._error(
                self._at("identities", identity, *where, "account"),
                f"account {account!r} is excluded from management on target {target.name!r}",
            )
            ok = False
        entitlements = set()
        for j, text in enumerate(item["entitlements"]):
            try:
                canonical = connector.parse_entitlement(text)
                entitlements.add(canonical)
                where_ent = self._at("identities", identity, *where, "entitlements", j)
                self.declared.append(Declared(identity, target.name, canonical, where_ent))
            except GrammarError as exc:
                self._error(self._at("identities", identity, *where, "entitlements", j), str(exc))
                ok = False
        if not ok:
            return None
        return Access(target.name, account, frozenset(entitlements), item["expires"])

    def _grammar(
        self, identity: str, where: tuple[str, int], item: dict[str, Any], connector: ConnectorType
    ) -> None:
        try:
            connector.check_account(item["account"])
        except GrammarError as exc:
            self._error(self._at("identities", identity, *where, "account"), str(exc))
        for j, text in enumerate(item["entitlements"]):
            try:
                connector.parse_entitlement(text)
            except GrammarError as exc:
                self._error(self._at("identities", identity, *where, "entitlements", j), str(exc))

    def _check_sink(self, identity: str, sink: str, access: tuple[Access, ...]) -> None:
        """``sink`` as written; a relative file path is then resolved beside the policy."""
        from lockstep.credentials.sinks import SinkError, check_sink

        where = self._at("identities", identity, "credentials", "sink")
        self.sinks[identity] = where
        try:
            check_sink(sink)
        except SinkError as exc:
            self._error(where, str(exc))
            return
        several = len({a.target for a in access}) > 1
        if "{target}" not in sink and several:
            self._error(
                where,
                "this identity has access on several targets: put {target} in the sink "
                "so that each target's credential gets its own file or secret",
            )


def _known(names: Mapping[str, object]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (none defined)"


def _workload(spec: IdentitySpec) -> Workload | None:
    w = spec.workload
    if w is None:
        return None
    return Workload(w.issuer, w.subject, w.audience, dict(w.claims), w.max_token_lifetime)


def _audit(spec: AuditSpec, base_dir: Path) -> AuditSettings:
    checkpoints = spec.checkpoints
    if checkpoints is not None and checkpoints.startswith("file:"):
        where = Path(checkpoints.removeprefix("file:")).expanduser()
        checkpoints = f"file:{where if where.is_absolute() else (base_dir / where).resolve()}"
    key = spec.signing_key
    if key is not None:
        path = Path(key).expanduser()
        key = str(path if path.is_absolute() else (base_dir / path).resolve())
    return AuditSettings(
        checkpoints=checkpoints,
        checkpoint_every=spec.checkpoint_every,
        checkpoint_interval_s=spec.checkpoint_interval or DEFAULT_CHECKPOINT_INTERVAL_S,
        signing_key=key,
        endpoint_url=spec.endpoint_url,
        region=spec.region,
    )


def _rules(spec: RulesSpec) -> Rules:
    return Rules(
        orphan_accounts=RuleAction(spec.orphan_accounts),
        excess_entitlements=RuleAction(spec.excess_entitlements),
        ownerless_identities=RuleAction(spec.ownerless_identities),
        mass_change_limit=spec.mass_change_limit,
        dormant_after_s=spec.dormant_after,
        escalation_paths=RuleAction(spec.escalation_paths),
    )
