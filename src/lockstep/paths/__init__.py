"""Escalation paths: who can obtain an identity's credential or privileges, across targets.

Connectors read facts (``TargetFacts``, pure data) through their sessions; each kind of facts
turns itself into edges with pure functions (``postgres``, ``redis``, ``ldap``, ``aws``,
``sinks``); ``analysis`` joins them with the policy into one graph, and ``search`` finds every
path, shortest first, and the smallest cut.
"""
