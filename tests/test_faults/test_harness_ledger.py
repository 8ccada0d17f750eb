"""The ledger stores what several processes record, and the checker's arithmetic is right."""

from __future__ import annotations

import signal
import sqlite3
import textwrap
from pathlib import Path

import pytest
from faultlib import Handling, Ledger, Procs, Publish, check

pytestmark = pytest.mark.fault


def done(event_id: str, handler: str = "handler", consumer: str = "c1", delivery: int = 1) -> Handling:
    """A crafted side-effect row."""
    return Handling(event_id, handler, consumer, 1, delivery, "done", "s", "0-1", 0.0)


def pub(event_id: str, *outcomes: str) -> list[Publish]:
    """Crafted publisher rows: ``invoke`` then the given outcomes."""
    return [Publish(event_id, o, 1, "", 0.0) for o in ("invoke", *outcomes)]  # type: ignore[arg-type]


def test_clean_run_is_ok() -> None:
    """Every published id handled once, nothing pending: ok, with nothing lost, extra or twice."""
    v = check([done("a"), done("b")], [*pub("a", "ok"), *pub("b", "ok")], pending=0)
    assert v.ok and v.handled == 2 and not (v.lost or v.unexpected or v.duplicated)


def test_lost_are_expected_ids_never_handled() -> None:
    """lost = ids that had to be handled (publish ok, or listed in expected) minus handled ones."""
    v = check([done("a")], [*pub("a", "ok"), *pub("b", "ok")], expected=["c"])
    assert v.lost == {("b", "handler"), ("c", "handler")}
    assert not v.ok


def test_duplicates_count_side_effects_not_deliveries() -> None:
    """duplicated = ids whose side effect ("done") happened more than once; "begin" rows and
    redeliveries that did not complete do not count."""
    begin = Handling("a", "handler", "c2", 2, 2, "begin", "s", "0-1", 0.0)
    v = check([done("a"), begin, done("b"), done("b", consumer="c2", delivery=2), done("b")], expected=["a", "b"])
    assert v.duplicated == {("b", "handler"): 3}
    assert not v.lost and not v.unexpected


def test_unexpected_are_failed_or_unpublished_ids() -> None:
    """unexpected = handled ids whose publish failed (wrote nothing) or that nobody published."""
    v = check([done("a"), done("f"), done("ghost")], [*pub("a", "ok"), *pub("f", "fail")])
    assert v.unexpected == {("f", "handler"), ("ghost", "handler")}


def test_unknown_outcomes_may_go_either_way() -> None:
    """An id whose publish ended unknown (or never ended) is neither lost when absent nor
    unexpected when handled; an ok after a failed attempt makes it expected."""
    rows = [*pub("u1", "unknown"), *pub("u2", "unknown"), *pub("killed"), *pub("r", "fail"), *pub("r", "ok")]
    v = check([done("u1"), done("killed"), done("r")], rows)
    assert v.maybe == {("u1", "handler"), ("u2", "handler"), ("killed", "handler")}
    assert v.expected == {("r", "handler")}
    assert v.ok


def test_each_handler_is_checked_on_its_own() -> None:
    """With two handlers per event, a missing or doubled handler shows under that handler's name."""
    rows = [done("a", "email"), done("a", "inapp"), done("b", "email"), done("b", "email")]
    v = check(rows, expected=["a", "b"], handlers=["email", "inapp"])
    assert v.lost == {("b", "inapp")}
    assert v.duplicated == {("b", "email"): 2}


def test_pending_after_drain_fails_the_verdict() -> None:
    """Entries still pending after drain make the verdict fail even when handling was perfect."""
    v = check([done("a")], expected=["a"], pending=3)
    assert not v.ok and "pending 3" in str(v)


def test_verdict_reads_what_was_recorded(ledger: Ledger) -> None:
    """Ledger.verdict() checks the rows written through the ledger API (publishing() included)."""
    with ledger.publishing("a"):
        pass
    with pytest.raises(ConnectionError), ledger.publishing("b", unknown=(ConnectionError,)):
        raise ConnectionError("reply lost")
    with pytest.raises(ValueError), ledger.publishing("c"):
        raise ValueError("invalid payload")
    ledger.handled("a", consumer="c1", delivery=1, phase="begin")
    ledger.handled("a", consumer="c1", delivery=1)
    ledger.handled("b", consumer="c1", delivery=1)
    v = ledger.verdict(pending=0)
    assert [p.outcome for p in ledger.publishes()] == ["invoke", "ok", "invoke", "unknown", "invoke", "fail"]
    assert v.ok and v.expected == {("a", "handler")} and v.maybe == {("b", "handler")}
    assert len(ledger.handlings(phase=None)) == 3 and ledger.count_done() == 2


_WRITER = textwrap.dedent(
    """
    import sys
    from faultlib import Ledger
    led = Ledger(sys.argv[1])
    led.mark("writer", "ready")
    for i in range(int(sys.argv[2])):
        led.handled(f"{sys.argv[3]}-{i}", consumer=sys.argv[3], delivery=1)
    """
)


def test_several_processes_write_concurrently(procs: Procs, ledger: Ledger, ledger_path: Path) -> None:
    """Four processes writing 300 rows each at once: every row lands, none twice."""
    children = [procs.python(f"w{n}", "-c", _WRITER, str(ledger_path), "300", f"w{n}") for n in range(4)]
    for child in children:
        assert child.wait(30) == 0, child.tail()
    v = ledger.verdict(expected=[f"w{n}-{i}" for n in range(4) for i in range(300)])
    assert v.ok and v.handled == 1200


def test_sigkill_mid_write_leaves_a_consistent_ledger(procs: Procs, ledger: Ledger, ledger_path: Path) -> None:
    """A writer SIGKILLed while writing leaves an intact database that others keep using."""
    child = procs.python("w", "-c", _WRITER, str(ledger_path), "1000000", "w")
    ledger.wait_done(200, timeout_s=20)
    assert child.kill() == -signal.SIGKILL
    ledger.handled("after", consumer="test", delivery=1)
    with sqlite3.connect(ledger_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ids = [h.event_id for h in ledger.handlings()]
    assert ids[-1] == "after" and len(ids) == len(set(ids))
