"""Saved plans, like Terraform's: ``plan -o PLANFILE`` writes what apply would do together with
the digest of the policy and of every target's state it was computed from; ``apply PLANFILE``
executes exactly those actions, and only while nothing they were computed from has changed.
Pure: the CLI reads and writes the bytes.

A plan file holds no secret: actions, names and digests (a target's ``Secret`` settings are
digested as a placeholder, never their value). It is sealed with an HMAC under a key derived
from the vault key, so that a plan file edited after it was written (an action added, a
digest forged) is refused, not executed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

from lockstep.errors import LockstepError
from lockstep.model import Account, Action, Observation, Op, Policy, Snapshot
from lockstep.secret import Secret

FORMAT = "lockstep-plan/1"
Seal = Callable[[bytes], str]  # the HMAC of a plan file's body, hex


class PlanFileError(LockstepError):
    """A plan file that cannot be used: unreadable, of another format, or tampered with."""

    code = "plan_file_refused"
    default_hint = "run lockstep plan -o PLANFILE again"


@dataclass(frozen=True)
class SavedPlan:
    created_at: datetime
    targets: tuple[str, ...]  # the targets it covers (every target, or those of --target)
    policy: Mapping[str, str]  # element ("targets/NAME", "rules", ...) -> digest
    state: Mapping[str, Mapping[str, str]]  # target -> account -> digest
    actions: tuple[Action, ...]
    blocked: bool  # the blast-radius guard tripped when it was made


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data, secrets as a placeholder, sets in a stable order."""
    if isinstance(value, Secret):
        return "<secret>"
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in sorted(type(value).model_fields)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, frozenset | set):
        return sorted((_plain(v) for v in value), key=json.dumps)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _digest(value: Any) -> str:
    text = json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def policy_digests(policy: Policy) -> dict[str, str]:
    """One digest per element of the policy, so that a difference can be named."""
    digests = {f"targets/{name}": _digest(t) for name, t in policy.targets.items()}
    digests |= {f"owners/{name}": _digest(o) for name, o in policy.owners.items()}
    digests |= {f"identities/{name}": _digest(i) for name, i in policy.identities.items()}
    for single in ("rules", "audit", "governance"):
        digests[single] = _digest(getattr(policy, single))
    return digests


def account_digest(account: Account) -> str:
    # Open sessions come and go with the workload's own connections: not part of the state
    # a plan depends on (ending them is re-checked when the action runs).
    return _digest(dataclasses.replace(account, sessions=0))[:32]


def state_digests(observed: Mapping[str, Observation]) -> dict[str, dict[str, str]]:
    return {
        name: {account: account_digest(a) for account, a in sorted(obs.accounts.items())}
        for name, obs in sorted(observed.items())
        if isinstance(obs, Snapshot)
    }


def encode(saved: SavedPlan, seal: Seal) -> bytes:
    body = {
        "format": FORMAT,
        "created_at": saved.created_at.isoformat(),
        "targets": list(saved.targets),
        "policy": dict(saved.policy),
        "state": {t: dict(accounts) for t, accounts in saved.state.items()},
        "actions": [_action_json(a) for a in saved.actions],
        "blocked_by_mass_change": saved.blocked,
    }
    return json.dumps({**body, "mac": seal(_canonical(body))}, indent=1).encode() + b"\n"


def decode(data: bytes, seal: Seal) -> SavedPlan:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise PlanFileError("not a lockstep plan file (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise PlanFileError(f"not a lockstep plan file (expected format {FORMAT})")
    body = {k: v for k, v in document.items() if k != "mac"}
    mac = document.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, seal(_canonical(body))):
        raise PlanFileError(
            "the plan file was changed after it was written, or made with another key "
            "(its MAC does not match): nothing applied"
        )
    try:
        return SavedPlan(
            created_at=datetime.fromisoformat(body["created_at"]),
            targets=tuple(body["targets"]),
            policy=dict(body["policy"]),
            state={t: dict(a) for t, a in body["state"].items()},
            actions=tuple(_action(a) for a in body["actions"]),
            blocked=bool(body["blocked_by_mass_change"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"the plan file lacks what apply needs ({exc})") from None


def staleness(
    saved: SavedPlan,
    policy_now: Mapping[str, str],
    observed: Mapping[str, Observation],
) -> list[str]:
    """What changed since the plan was made, one line each; empty when nothing did."""
    changes = _changed("policy", saved.policy, policy_now)
    for name in saved.targets:
        obs = observed.get(name)
        if not isinstance(obs, Snapshot):
            error = obs.error if obs is not None else "not read"
            changes.append(f"target {name} could not be read: {error}")
            continue
        now = state_digests({name: obs})[name]
        changes += _changed(f"target {name}: account", saved.state.get(name, {}), now)
    return changes


def _changed(what: str, before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    lines = [
        f"{what} {k} changed" for k in sorted(before.keys() & now.keys()) if before[k] != now[k]
    ]
    lines += [f"{what} {k} was added" for k in sorted(now.keys() - before.keys())]
    lines += [f"{what} {k} was removed" for k in sorted(before.keys() - now.keys())]
    return lines


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _action_json(a: Action) -> dict[str, Any]:
    return {
        "op": str(a.op),
        "target": a.target,
        "account": a.account,
        "entitlement": a.entitlement,
        "identity": a.identity,
        "reason": a.reason,
    }


def _action(data: Mapping[str, Any]) -> Action:
    return Action(
        Op(data["op"]),
        str(data["target"]),
        str(data["account"]),
        data["entitlement"],
        data["identity"],
        str(data["reason"]),
    )
