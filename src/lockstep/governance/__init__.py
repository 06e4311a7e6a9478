"""Governance: people and their tokens, access requests and their approvals, time-bound
grants and separation of duties. The pure rules live in ``lockstep.engine`` (``sod``,
``desired``); this package holds the records and the decisions taken over them."""
