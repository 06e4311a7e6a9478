"""Zero-downtime rotation on Redis: an ACL user accepts every password it holds.

``add_credential`` adds a password (``>new``) and keeps the others, so the workload goes on
logging in with the old one until it has the new one; ``retire_credential`` then removes
exactly the old one. It is named by its SHA-256 (``!HASH``), the form in which Redis keeps
and lists passwords, so the old secret is never sent again. Neither touches the user's rules,
its on/off flag or lockstep's rule record.
"""

from __future__ import annotations

import hashlib

from lockstep.connectors.base import ActionFailed, Credential, TargetUnreachable
from lockstep.connectors.redis.admin import RedisAdmin
from lockstep.secret import Secret, generate_password


class RedisCredentials(RedisAdmin):
    def add_credential(self, account: str, secret: Secret | None) -> Credential:
        """A new password alongside the current ones. The account must be enabled: a password
        added to a user that is off (suspended) or open to anyone (nopass) would not be a
        working credential, and adding one must never restore or lock an account."""
        self._managed(account)
        user = self._user(account)
        if user is None:
            raise ActionFailed(f"no ACL user {account!r} on {self._target}")
        if not user.enabled:
            raise ActionFailed(
                f"{account!r} is off, has no password or needs none (nopass): a credential "
                "added to it would not work; restore it instead"
            )
        new = secret if secret is not None else generate_password()
        self._setuser(account, ">" + new.reveal(), secret=new)
        self._save_acl()
        return Credential(account, new)

    def retire_credential(self, account: str, credential: Credential) -> None:
        """Remove one password, leaving the others working. A password the user no longer
        holds is already refused: nothing to do. Its only password is never removed: that
        would lock the workload out rather than rotate."""
        self._managed(account)
        if credential.username != account:
            raise ActionFailed(
                f"a credential of {credential.username!r} cannot be retired from {account!r}"
            )
        held = self._password_hashes(account)
        retiring = hashlib.sha256(credential.secret.reveal().encode()).hexdigest()
        if retiring not in held:
            return
        if len(held) == 1:
            raise ActionFailed(
                f"that is the only password of {account!r}: retiring it would lock the "
                "workload out; add a credential first"
            )
        self._setuser(account, "!" + retiring)
        self._save_acl()

    def _password_hashes(self, account: str) -> list[str]:
        reply = self._command(
            f"ACL GETUSER {account!r}", "ACL", "GETUSER", account, failure=TargetUnreachable
        )
        if reply is None:
            raise ActionFailed(f"no ACL user {account!r} on {self._target}")
        return [str(h) for h in reply["passwords"]]
