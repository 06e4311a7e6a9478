"""What reviews remember of each access is kept per process between passes, and never
trusted without a look at its target's counter: a write by another process is seen."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from lockstep.engine.review_model import Subject
from lockstep.governance.reviews import Changes, ReviewStore
from lockstep.journal import Journal
from lockstep.store import Store

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def subject(owner: str, account: str = "api") -> Subject:
    return Subject("api", "db", account, NOW, None, owner)


def test_a_write_by_another_process_is_seen_and_ones_own_needs_no_reread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    with Store.open(url) as mine, Store.open(url) as theirs:
        me = ReviewStore(mine, Journal(mine), lambda: NOW)
        other = ReviewStore(theirs, Journal(theirs), lambda: NOW)
        me.record(Changes(subjects={("api", "db", "api"): subject("team")}), notify=False)
        assert me.state(["db"], []).subjects["api", "db", "api"].owner == "team"
        other.record(Changes(subjects={("api", "db", "api"): subject("other")}), notify=False)
        assert me.state(["db"], []).subjects["api", "db", "api"].owner == "other"
        me.record(Changes(gone=[("api", "db", "api")]), notify=False)
        assert me.state(["db"], []).subjects == {}
        assert other.state(["db"], []).subjects == {}
        other.record(Changes(subjects={("api", "db", "x"): subject("t", "x")}), notify=False)
        assert set(me.state(["db"], []).subjects) == {("api", "db", "x")}
