"""`lockstep run`: the service (process, reconcile loop, API). ``process.run_service`` is the
entry point; this package imports nothing itself, so that importing a light module of it
(``settings``) does not load the web stack."""
