"""The lifecycle table: every move a pending send makes is an edge of ``TRANSITIONS``; any other is refused."""

from __future__ import annotations

import pytest

from sendcore.ledger import DEAD, IN_FLIGHT, QUEUED, SCHEDULED, STATE_NAMES, TRANSITIONS, Entry, StateError
from sendcore.send import Reason, Status

from .helpers import core, send

STATES = (SCHEDULED, QUEUED, IN_FLIGHT)


def _ledger_with(where: int):
    """A core's ledger holding one entry, moved (along the table) to ``where``."""
    c = core()
    e = Entry(send(f"s-{where}"), 0.0, 0)
    c.ledger.add(e)
    path = {SCHEDULED: [], QUEUED: [QUEUED], IN_FLIGHT: [QUEUED, IN_FLIGHT]}[where]
    for step in path:
        c.ledger.move(e, step)
    return c.ledger, e


@pytest.mark.parametrize("src", STATES)
@pytest.mark.parametrize("dst", STATES)
def test_a_move_is_made_exactly_when_the_table_has_it(src: int, dst: int) -> None:
    ledger, e = _ledger_with(src)
    before = list(ledger.by_where)
    if dst in TRANSITIONS[src]:
        ledger.move(e, dst)
        assert e.where == dst
        assert ledger.by_where == ledger.recount()
    else:
        with pytest.raises(StateError) as err:
            ledger.move(e, dst)
        assert f"{STATE_NAMES[src]} -> {STATE_NAMES[dst]}" in str(err.value)
        assert "s-" in str(err.value)  # names the send
        assert e.where == src and ledger.by_where == before  # nothing changed


def test_the_table_refuses_the_moves_that_would_lose_or_double_a_send() -> None:
    # Straight from the wheel to a provider skips admission; in flight twice would send twice.
    assert IN_FLIGHT not in TRANSITIONS[SCHEDULED]
    assert IN_FLIGHT not in TRANSITIONS[IN_FLIGHT]
    assert QUEUED not in TRANSITIONS[QUEUED]
    # Every live state can end, and an ended send never comes back.
    assert all(DEAD in TRANSITIONS[s] for s in STATES)
    assert TRANSITIONS[DEAD] == frozenset()


def test_an_ended_send_cannot_be_moved_again() -> None:
    ledger, e = _ledger_with(QUEUED)
    ledger.finish(e, Status.SKIPPED, Reason.EXPIRED, 0.0, "test")
    assert e.where == DEAD
    before = list(ledger.by_where)
    for dst in STATES:
        with pytest.raises(StateError, match="dead -> "):
            ledger.move(e, dst)
    assert ledger.by_where == before == ledger.recount()


def test_a_batch_move_checks_its_edge_before_moving_any() -> None:
    c = core()
    es = [Entry(send(f"b{i}"), 0.0, 0) for i in range(3)]
    for e in es:
        c.ledger.add(e)
    with pytest.raises(StateError, match="3 sends: scheduled -> in_flight"):
        c.ledger.move_all(es, SCHEDULED, IN_FLIGHT)
    assert [e.where for e in es] == [SCHEDULED] * 3
    assert c.ledger.by_where == c.ledger.recount() == [3, 0, 0]
    for e in es:
        c.ledger.move(e, QUEUED)
    c.ledger.move_all(es, QUEUED, IN_FLIGHT)
    assert [e.where for e in es] == [IN_FLIGHT] * 3
    assert c.ledger.by_where == c.ledger.recount() == [0, 0, 3]


def test_the_architecture_doc_tables_exactly_the_moves_of_the_table() -> None:
    """docs/architecture.md lists the lifecycle for readers; it must not drift from ``TRANSITIONS``."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    table = doc.split("| from | to | when |", 1)[1].split("\n\n", 1)[0]
    by_name = {name.upper(): state for state, name in STATE_NAMES.items()}
    documented = set()
    for row in table.splitlines()[2:]:  # past the header's rule
        src_cell, dst_cell = row.split("|")[1:3]
        if "(new)" in src_cell:  # how an entry starts, not a move
            continue
        sources = STATES if "any" in src_cell else [by_name[s] for s in re.findall(r"`(\w+)`", src_cell)]
        documented |= {(s, by_name[d]) for s in sources for d in re.findall(r"`(\w+)`", dst_cell)}
    assert documented == {(s, d) for s, dsts in TRANSITIONS.items() for d in dsts}
