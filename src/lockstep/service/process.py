"""`lockstep run`: the reconcile loop, its HTTP server, and the process around them.

The controller's threads reconcile; uvicorn serves the API from a thread of its own; the main
thread waits for SIGTERM or SIGINT, then stops scheduling, lets the actions under way finish,
releases the targets and exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from secrets import token_hex
from types import FrameType

import uvicorn

from lockstep.credentials.vault import Vault, load_key
from lockstep.dashboard.app import Dashboard, mount
from lockstep.dashboard.estate import Estate
from lockstep.dashboard.sessions import Sessions, session_key
from lockstep.engine.workspace import state_key_dir, state_url
from lockstep.errors import LockstepError
from lockstep.evidence.service_checkpoints import Checkpointer
from lockstep.policy.hosts import is_loopback
from lockstep.policy.load import LoadedPolicy, load_policy
from lockstep.secret import Secret
from lockstep.service.api import Credentials, create_app
from lockstep.service.controller import Controller
from lockstep.service.events import PolicySource, policy_fingerprint
from lockstep.service.governance_api import Governance
from lockstep.service.logs import configure, get_logger
from lockstep.service.metrics import Metrics
from lockstep.service.principals import Authenticators
from lockstep.service.reviews_api import ReviewDesk
from lockstep.service.scaleout import open_leases
from lockstep.service.settings import BEARER_ENV
from lockstep.store import Store

SHUTDOWN_GRACE_S = 120.0  # for the actions under way to finish and be verified
_HTTP_STOP_S = 10.0


class ServiceError(LockstepError):
    """The service cannot start (its address is taken, ...). The message holds no secret."""

    code = "service_cannot_start"


@dataclass(frozen=True)
class ServiceOptions:
    config: Path
    state: str | None
    host: str
    port: int
    interval_cap_s: float | None = None  # no target is checked less often than this
    key_sources: Mapping[str, str] = field(default_factory=dict)  # issuer -> URL or file:PATH
    insecure_no_auth: bool = False  # listen off loopback with no authentication at all
    dry_run: bool = False  # report-only: read, plan, record findings; never apply


def run_service(options: ServiceOptions) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code."""
    fingerprint = policy_fingerprint(options.config)  # before loading: an edit in between
    loaded = load_policy(options.config)  # is then seen as a change, not missed
    configure()
    log = get_logger()
    _refuse_open_listener(options, loaded)
    listener = _bind(options.host, options.port)
    store = Store.open(state_url(loaded, options.state))
    try:
        key = load_key(state_key_dir(loaded))
        vault = Vault(store, key)
        instance = f"{socket.gethostname()}:{os.getpid()}:{token_hex(3)}"
        leases = open_leases(store, instance, log)
        metrics = Metrics.create()
        credentials = Credentials(store, vault, options.key_sources, log, metrics)
        checkpointer = Checkpointer(store, log)
        checkpointer.load(loaded.policy.audit)
        token = os.environ.get(BEARER_ENV)
        operator = Secret(token) if token else None
        controllers: list[Controller] = []
        governance = Governance(
            store,
            lambda target: controllers[0].grant_changed(target) if controllers else None,
            log,
        )

        desk = ReviewDesk(
            store, lambda target: controllers[0].grant_changed(target) if controllers else None, log
        )

        def on_policy(changed: LoadedPolicy) -> None:
            credentials.load(changed)
            governance.load(changed)
            desk.load(changed)
            checkpointer.reload(changed.policy.audit)

        def chores() -> None:
            credentials.reap()
            governance.expire()
            checkpointer.tick()

        estate = Estate(
            store, vault, lambda: controller.current(), lambda t: controller.holds(t), log
        )
        controller = Controller(
            PolicySource(options.config, fingerprint),
            loaded,
            store,
            vault,
            leases,
            metrics,
            log,
            options.interval_cap_s,
            on_policy=on_policy,
            chore=chores,
            on_seen=estate.seen,
            dry_run=options.dry_run,
        )
        controllers.append(controller)
        authenticators = Authenticators(
            lambda: controller.current()[0].policy, operator, store, options.key_sources
        )
        app = create_app(controller, credentials, operator, governance, authenticators, desk)
        sessions = Sessions(session_key(key), secure=not is_loopback(options.host), store=store)
        mount(app, Dashboard(estate, authenticators, sessions, log))
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        )
        desk.start()
        try:
            return _serve(controller, estate, server, listener, options)
        finally:
            desk.stop()
            credentials.close()
    finally:
        store.close()
        listener.close()


def _serve(
    controller: Controller,
    estate: Estate,
    server: uvicorn.Server,
    listener: socket.socket,
    options: ServiceOptions,
) -> int:
    log = get_logger()
    stop = threading.Event()
    crashed: list[str] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info(
            "stopping",
            target=None,
            op="stop",
            status="requested",
            signal=signal.Signals(signum).name,
        )
        stop.set()

    def on_crash(args: threading.ExceptHookArgs) -> None:
        # A bug, not a failure of a target or the store (those are handled where they
        # happen): stop loudly rather than leave a target silently unreconciled.
        crashed.append(args.thread.name if args.thread else "?")
        log.error(
            "internal error: the service stops",
            target=None,
            op="crash",
            status="error",
            thread=crashed[-1],
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.excepthook = on_crash
    controller.start()
    estate.start()
    http = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="lockstep-http", daemon=True
    )
    http.start()
    host, port = listener.getsockname()[:2]
    log.info(
        "service started",
        target=None,
        op="start",
        status="running",
        instance=controller.instance,
        listen=f"{host}:{port}",
        interval_cap_s=options.interval_cap_s,
    )
    stop.wait()
    finished = controller.stop(SHUTDOWN_GRACE_S)
    estate.stop()
    server.should_exit = True
    http.join(_HTTP_STOP_S)
    clean = finished and not crashed
    log.info("service stopped", target=None, op="stop", status="stopped" if clean else "failed")
    return 0 if clean else 1


def _refuse_open_listener(options: ServiceOptions, loaded: LoadedPolicy) -> None:
    """Off loopback, the API must require authentication: the operator's token
    (``LOCKSTEP_API_TOKEN``) or people's tokens from an OIDC issuer (``governance.people``),
    unless ``--insecure-no-auth`` says the network in between is trusted."""
    if options.insecure_no_auth or _is_loopback(options.host):
        return
    if os.environ.get(BEARER_ENV) or loaded.policy.governance.people is not None:
        return
    raise ServiceError(
        f"refusing to listen on {options.host}:{options.port} without authentication: set "
        f"{BEARER_ENV} (or governance.people in the policy), listen on 127.0.0.1, or pass "
        "--insecure-no-auth"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ServiceError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return listener
