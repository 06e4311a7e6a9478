"""Short-lived credentials: the lease manager, its records and target sessions, the batcher
that groups concurrent requests, and the workload-identity verifier."""
