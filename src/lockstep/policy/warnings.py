"""What ``lockstep validate`` warns of without refusing the policy: a ``file:`` sink that
would write credentials into a git work tree where git does not ignore them, one
``git add .`` away from being committed; an admin connection in clear to another host."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lockstep.engine.inert import inert
from lockstep.model import Policy
from lockstep.policy.errors import PolicyError
from lockstep.policy.load import LoadedPolicy


def policy_warnings(loaded: LoadedPolicy) -> list[PolicyError]:
    found = []
    for name, target in sorted(loaded.policy.targets.items()):
        where = loaded.locations.get(("targets", name))
        if target.insecure_transport is not None and where is not None:
            found.append(
                PolicyError(where, inert(f"warning: target {name}: {target.insecure_transport}"))
            )
    for name, identity in sorted(loaded.policy.identities.items()):
        sink = identity.credentials.sink
        where = loaded.sinks.get(name)
        if sink is None or where is None or not sink.startswith("file:"):
            continue
        for path in _sink_files(loaded.policy, name, sink):
            why = _committable(path)
            if why is not None:
                found.append(PolicyError(where, f"warning: {why}"))
                break
    return found


def _sink_files(policy: Policy, identity: str, sink: str) -> list[Path]:
    template = sink.removeprefix("file:")
    targets = sorted({a.target for a in policy.identities[identity].access}) or [""]
    # The loader resolved relative paths beside the policy, as delivery writes them.
    return [Path(template.replace("{target}", t)).expanduser().absolute() for t in targets]


def _committable(path: Path) -> str | None:
    """Why a credential written at ``path`` could be committed, or None."""
    tree = _work_tree(path.parent)
    if tree is None:
        return None
    git = shutil.which("git")
    if git is None:
        return (
            f"the sink {path} is inside the git work tree {tree}, and without git lockstep "
            "cannot tell whether it is ignored"
        )
    ignored = subprocess.run(
        [git, "-C", str(tree), "check-ignore", "-q", "--no-index", str(path)],
        capture_output=True,
        check=False,
        timeout=10,
    )
    if ignored.returncode == 0:
        return None
    if ignored.returncode != 1:
        return (
            f"the sink {path} is inside the git work tree {tree}, and git cannot tell "
            "whether it is ignored"
        )
    return (
        f"the sink {path} is inside the git work tree {tree} and git does not ignore it: "
        "a credential written there is one `git add` away from a commit (add it to "
        ".gitignore, or write it outside the repository)"
    )


def _work_tree(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that holds ``.git``."""
    for directory in [start, *start.parents]:
        if (directory / ".git").exists():
            return directory
    return None
