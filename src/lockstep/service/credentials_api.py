"""``POST /v1/credentials``: a workload trades a JWT from a trusted issuer for a lease.

The service mounts ``router`` and provides what it needs on ``app.state`` (or overrides the
dependency functions below through ``app.dependency_overrides``):

- ``app.state.leases``: a ``lockstep.leases.LeaseManager``
- ``app.state.workloads``: a ``lockstep.workload.WorkloadVerifier``
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
