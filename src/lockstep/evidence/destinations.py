"""Where the service keeps its checkpoints: a directory (``file:DIR``) or an S3 bucket
(``s3://BUCKET/PREFIX``, through boto3 with the standard AWS credentials). Both keep every
checkpoint under its own name, in the order of the entries they cover; none is overwritten."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from lockstep.evidence.checkpoints import Checkpoint, CheckpointError, parse_checkpoint
from lockstep.model import AuditSettings
from lockstep.secret import redact

_PATTERN = "checkpoint-"


class Destination(Protocol):
    def write(self, checkpoint: Checkpoint) -> str:
        """Keep ``checkpoint``; returns where. Raises CheckpointError."""
        ...

    def latest(self) -> Checkpoint | None:
        """The checkpoint covering the most entries, or None. Raises CheckpointError."""
        ...


def destination_for(settings: AuditSettings) -> Destination | None:
    where = settings.checkpoints
    if where is None:
        return None
    if where.startswith("file:"):
        return Directory(Path(where.removeprefix("file:")))
    bucket, _, prefix = where.removeprefix("s3://").partition("/")
    return Bucket(bucket, prefix.strip("/"), settings.endpoint_url, settings.region)


class Directory:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, checkpoint: Checkpoint) -> str:
        target = self.path / checkpoint.name
        temp = self.path / f".{checkpoint.name}.{os.getpid()}"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            temp.write_text(checkpoint.to_json(), encoding="utf-8")
            # A link fails if the name is taken: a checkpoint is never replaced.
            os.link(temp, target)
        except FileExistsError:
            pass  # this seq was checkpointed already (another instance, or a restart)
        except OSError as exc:
            raise CheckpointError(f"cannot write the checkpoint in {self.path}: {exc}") from None
        finally:
            temp.unlink(missing_ok=True)
        return str(target)

    def latest(self) -> Checkpoint | None:
        found = sorted(self.path.glob(f"{_PATTERN}*.json")) if self.path.is_dir() else []
        if not found:
            return None
        try:
            return parse_checkpoint(found[-1].read_text(encoding="utf-8"), str(found[-1]))
        except OSError as exc:
            raise CheckpointError(f"cannot read {found[-1]}: {exc.strerror}") from None


class Bucket:
    def __init__(
        self, bucket: str, prefix: str, endpoint_url: str | None, region: str | None
    ) -> None:
        import boto3  # type: ignore[import-untyped,unused-ignore]

        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def write(self, checkpoint: Checkpoint) -> str:
        key = f"{self.prefix}{checkpoint.name}"
        body = checkpoint.to_json().encode()
        self._call("put_object", Key=key, Body=body, ContentType="application/json")
        return f"s3://{self.bucket}/{key}"

    def latest(self) -> Checkpoint | None:
        keys: list[str] = []
        more: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=f"{self.prefix}{_PATTERN}", **more)
            keys += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            more = {"ContinuationToken": page["NextContinuationToken"]}
        if not keys:
            return None
        key = max(keys)
        body = self._call("get_object", Key=key)["Body"].read()
        return parse_checkpoint(body.decode("utf-8"), f"s3://{self.bucket}/{key}")

    def _call(self, method: str, **arguments: Any) -> Any:
        from botocore import exceptions as aws  # type: ignore[import-untyped,unused-ignore]

        try:
            return getattr(self._client, method)(Bucket=self.bucket, **arguments)
        except (aws.BotoCoreError, aws.ClientError) as exc:
            raise CheckpointError(
                f"cannot {method} on s3://{self.bucket}/{self.prefix}: {redact(str(exc))}"
            ) from None
