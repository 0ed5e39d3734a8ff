"""Coalesced wake-ups (`[dispatch]`): sends due within one slot of their origin are decided and sent together.

Never early: a send leaves at the first slot boundary at or after its due
instant, so at most one resolution late when nothing else holds it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendcore.errors import ConfigError
from sendcore.journal.journal import _load_settings
from sendcore.settings import Settings
from sendcore.testing.simulate import InstantProvider, drive

from .helpers import PARIS, at, core, send

T0 = at(PARIS, 2027, 1, 13, 12, 0)  # Wednesday 12:00 in Paris: inside every default window


def sent_batches(c, until):
    p = InstantProvider()
    drive(c, until, p, start=T0)
    return p


def test_flow_sends_due_within_one_50ms_slot_leave_in_one_batch_never_early():
    c = core()
    dues = [T0 + 1.001 + i * 0.004 for i in range(10)]  # 36 ms in all, inside the slot (T0 + 1.0, T0 + 1.05]
    assert c.submit([send(f"f{i}", to=f"+3361234{i:04d}", send_at=d) for i, d in enumerate(dues)], T0).accepted == 10
    p = sent_batches(c, T0 + 10)
    assert len(p.batches) == 1
    [(t, _)] = p.batches
    assert t >= max(dues) and t == pytest.approx(T0 + 1.05, abs=0.0011)


def test_transactional_sends_keep_the_millisecond():
    c = core()
    dues = [T0 + 1.0 + i * 0.004 for i in range(10)]
    c.submit([send(f"o{i}", to=f"+3361234{i:04d}", origin="transactional", send_at=d) for i, d in enumerate(dues)], T0)
    p = sent_batches(c, T0 + 10)
    assert len(p.batches) == 10
    assert all(0 <= t - d < 0.0011 for (t, _), d in zip(sorted(p.sent_at()), dues))


def test_zero_resolution_keeps_every_instant_and_the_setting_is_bounded():
    c = core('[dispatch]\nflow = "0s"\n')
    dues = [T0 + 1.0 + i * 0.004 for i in range(10)]
    c.submit([send(f"f{i}", to=f"+3361234{i:04d}", send_at=d) for i, d in enumerate(dues)], T0)
    assert len(sent_batches(c, T0 + 10).batches) == 10
    with pytest.raises(ConfigError, match=r"dispatch\.campaign: must be from 0s to 1h"):
        Settings.from_toml_bytes('[dispatch]\ncampaign = "2h"\n')
    with pytest.raises(ConfigError, match=r"dispatch\.flw: unknown key \(did you mean 'flow'\?\)"):
        Settings.from_toml_bytes('[dispatch]\nflw = "1s"\n')


def test_a_coarse_campaign_resolution_gathers_a_spread_campaign_into_few_batches():
    """1 s slots: 1,000 campaign emails spread over 10 s leave in about 10 batches (max_batch 500 aside)."""
    c = core('[dispatch]\ncampaign = "1s"\n')
    c.submit([send(f"c{i}", channel="email", origin="campaign", send_at=T0 + 0.5 + i * 0.01) for i in range(1000)], T0)
    p = sent_batches(c, T0 + 60)
    assert 10 <= len(p.batches) <= 12
    assert sum(len(b.sends) for _, b in p.batches) == 1000


def test_a_retry_is_woken_on_the_slot_too():
    """A deferred or retried flow send's `until` is the slot instant it is woken at, never before the backoff."""
    from sendcore.send import Status, TemporaryFailure, Accepted

    c = core('[retry]\nbase_delay = "1s"\njitter = 0.5\n')
    c.submit([send("r", send_at=T0 + 0.01)], T0)
    answers = iter([TemporaryFailure(code="x", message="busy"), Accepted()])
    outs: list = []
    drive(c, T0 + 60, lambda b, now: [next(answers) for _ in b.sends], start=T0, outcomes=outs)
    [retry] = [o for o in outs if o.status is Status.RETRYING]
    assert retry.until == pytest.approx(round(retry.until / 0.05) * 0.05, abs=1e-6)
    [sent] = [o for o in outs if o.status is Status.SENT]
    assert sent.at == pytest.approx(retry.until, abs=0.0011)


def test_journals_written_before_dispatch_existed_replay_with_every_instant_as_given(tmp_path):
    """Replay must decide as the core that wrote the journal did: no [dispatch] in its header = no slots."""
    import msgspec

    raw = msgspec.json.decode(msgspec.json.encode(Settings()))
    del raw["dispatch"]
    old = _load_settings(msgspec.json.encode(raw), tmp_path)
    assert (old.dispatch.transactional, old.dispatch.flow, old.dispatch.campaign) == (0.0, 0.0, 0.0)
    assert _load_settings(msgspec.json.encode(Settings()), tmp_path).dispatch.flow == 0.05


@settings(max_examples=60, deadline=None)
@given(offsets=st.lists(st.floats(0, 5), min_size=1, max_size=40),
       resolution=st.sampled_from(["0s", "1ms", "7ms", "50ms", "333ms", "1s"]),
       origin=st.sampled_from(["flow", "campaign"]))
def test_never_early_and_at_most_one_slot_late(offsets, resolution, origin):
    c = core(f'[dispatch]\n{origin} = "{resolution}"\n')
    channel = "email"  # no quiet hours, no pacing: only the slot decides
    sends = [send(f"x{i}", channel=channel, origin=origin, send_at=T0 + o, recipient=f"r{i}", smart_sending=False)
             for i, o in enumerate(offsets)]
    assert c.submit(sends, T0).accepted == len(sends)
    p = sent_batches(c, T0 + 10)
    slot = Settings.from_toml_bytes(f'[dispatch]\n{origin} = "{resolution}"\n').dispatch.resolution(origin)
    due = {s.id: s.send_at for s in sends}
    for t, sid in p.sent_at():
        assert t >= due[sid]
        assert t - due[sid] <= slot + 0.001 + 1e-6  # the slot, then the wheel's 1 ms tick
