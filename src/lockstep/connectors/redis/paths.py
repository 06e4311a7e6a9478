"""What a Redis session reads for escalation paths: ``ACL LIST``, ``CONFIG GET
enable-*-command`` and one pipeline of ``ACL DRYRUN`` checks for every user, turned into
``lockstep.paths.redis`` facts. Nothing is run but the dry runs."""

from __future__ import annotations

import redis

from lockstep.connectors.base import ActionFailed, TargetUnreachable
from lockstep.connectors.redis.acl import user_from_line
from lockstep.connectors.redis.admin import RedisAdmin, call, guard, parse_redis_url
from lockstep.paths.graph import PathRequest
from lockstep.paths.redis import CHECKS, RedisFacts, RedisUser


class RedisPaths(RedisAdmin):
    def read_paths(self, request: PathRequest) -> RedisFacts:
        lines = self._command("ACL LIST", "ACL", "LIST", failure=TargetUnreachable)
        users = [user_from_line(line) for line in lines]
        asked = [
            *CHECKS.items(),
            *((f"key:{pattern}", ("GET", pattern)) for pattern in self._secret_keys),
        ]
        pipe = self._client.pipeline(transaction=False)
        for user in users:
            for _, command in asked:
                call(pipe, "ACL", "DRYRUN", user.name, *command)
        with guard("ACL DRYRUN", TargetUnreachable):
            replies = pipe.execute(raise_on_error=False)
        if any(isinstance(r, redis.exceptions.ResponseError) for r in replies):
            raise TargetUnreachable(
                f"target {self._target}: ACL DRYRUN was refused; the admin needs +acl|dryrun"
            )
        found: list[RedisUser] = []
        for i, user in enumerate(users):
            passed = {
                name for j, (name, _) in enumerate(asked) if replies[i * len(asked) + j] == "OK"
            }
            found.append(
                RedisUser(
                    user.name,
                    on="on" in user.flags,
                    nopass="nopass" in user.flags,
                    rules=user.rules,
                    allowed=frozenset(p for p in passed if not p.startswith("key:")),
                    reads=frozenset(p[4:] for p in passed if p.startswith("key:")),
                )
            )
        module, debug = self._enabled_commands()
        admin = parse_redis_url(self._url).get("username") or "default"
        return RedisFacts(self._target, admin, tuple(found), self._secret_keys, module, debug)

    def _enabled_commands(self) -> tuple[str | None, str | None]:
        try:
            found = self._command("CONFIG GET", "CONFIG", "GET", "enable-*-command")
        except ActionFailed:
            return None, None  # the admin may not read the configuration: not assessed
        settings = dict(found) if isinstance(found, dict) else {}
        return settings.get("enable-module-command"), settings.get("enable-debug-command")
