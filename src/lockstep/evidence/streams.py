"""Where the evidence is written: any text stream (a file, stdout through the redactor)."""

from __future__ import annotations

from typing import Protocol


class TextSink(Protocol):
    def write(self, text: str, /) -> object: ...
