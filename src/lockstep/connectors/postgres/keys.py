"""The SCRAM keys of the passwords a session just set, so that the probe proving each one
logs in without computing its PBKDF2 a second time.

A password lockstep sets is hashed once, by lockstep, into the verifier it sends; libpq
would hash it again at the probe that proves it (4096 rounds by default: most of a probe's
client time). libpq 18 logs in with the keys themselves (``scram_client_key``,
``scram_server_key``): the server checks the same proof against the same stored key, so a
login with the keys is accepted exactly when the verifier the server holds is the one
lockstep set. Only an acceptance is taken from it: a login refused with the keys is tried
again with the password, since the keys would also be refused by another verifier of the
same password (lockstep's own, set by another process). With an older libpq, probes use the
password.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

from psycopg import pq

from lockstep.secret import Secret

SUPPORTED: Final = pq.version() >= 180000
# Enough for every password of a few batches; the oldest go first.
KEPT: Final = 4096


class ProbeKeys:
    def __init__(self) -> None:
        self._keys: OrderedDict[str, tuple[Secret, Secret]] = OrderedDict()
        self._lock = threading.Lock()  # probes read from several threads

    def remember(self, secret: Secret, client_key: Secret, server_key: Secret) -> None:
        if not SUPPORTED:
            return
        with self._lock:
            self._keys[secret.fingerprint()] = (client_key, server_key)
            self._keys.move_to_end(secret.fingerprint())
            while len(self._keys) > KEPT:
                self._keys.popitem(last=False)

    def login(self, secret: Secret) -> dict[str, str] | None:
        """The connection parameters that log in as ``secret`` with its keys, if kept."""
        with self._lock:
            kept = self._keys.get(secret.fingerprint())
        if kept is None:
            return None
        return {"scram_client_key": kept[0].reveal(), "scram_server_key": kept[1].reveal()}
