"""The one check of what a provider's send() returned (sendcore.results), shared by engine, core and contract test."""

from __future__ import annotations

from sendcore.results import shape_problem, storable
from sendcore.send import Accepted, InvalidResult, RateLimited, TemporaryFailure


def test_one_result_per_send_in_a_list_or_tuple_is_the_right_shape() -> None:
    assert shape_problem([Accepted()] * 3, 3, "p") is None
    assert shape_problem((Accepted(), TemporaryFailure("x")), 2, "p") is None


def test_a_wrong_count_or_a_non_list_is_named_with_the_provider() -> None:
    assert shape_problem([Accepted()], 2, "smsgw") == (
        "provider 'smsgw' returned 1 results for a batch of 2 sends; "
        "send() must return a list with exactly one result per send, in order")
    assert shape_problem({"a": Accepted()}, 1, "smsgw") == "provider 'smsgw' returned dict, not a list of results"
    assert shape_problem(None, 0, "smsgw") == "provider 'smsgw' returned NoneType, not a list of results"


def test_storable_keeps_good_results_and_replaces_each_bad_one_in_place() -> None:
    good = [Accepted(provider_id="m1"), TemporaryFailure("busy")]
    assert storable(good) == good
    out = storable([Accepted(), "sent", RateLimited("soon"), Accepted(provider_id="m2")])  # type: ignore[arg-type]
    assert out[0] == Accepted() and out[3] == Accepted(provider_id="m2")
    assert isinstance(out[1], InvalidResult) and "str" in out[1].detail
    assert isinstance(out[2], InvalidResult) and "RateLimited" in out[2].detail
