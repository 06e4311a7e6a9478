"""Policy as code: YAML files -> validated ``model.Policy``."""

from lockstep.policy.errors import PolicyError, PolicyInvalid
from lockstep.policy.load import DEFAULT_FILE, LoadedPolicy, load_policy

__all__ = ["DEFAULT_FILE", "LoadedPolicy", "PolicyError", "PolicyInvalid", "load_policy"]
