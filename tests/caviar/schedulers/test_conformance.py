"""One behaviour suite for every scheduler (like Optuna's pruner tests), then what sets each apart."""

from __future__ import annotations

import json
import random

import pytest

from caviar.errors import CaviarError
from caviar.schedulers import CONFIG_ENV, SCHEDULERS, Scheduler, from_config, from_env
from caviar.schedulers.asha import Asha
from caviar.schedulers.hyperband import Hyperband
from caviar.schedulers.median import MIN_PEERS, MedianScheduler

MAX = 9


@pytest.fixture(params=sorted(SCHEDULERS))
def scheduler(request: pytest.FixtureRequest) -> Scheduler:
    return SCHEDULERS[request.param](min_epochs=1, reduction_factor=3, max_epochs=MAX)


def rungs(s: Scheduler, tid: int) -> list[int]:
    return [step for step in range(MAX + 2) if s.decides_at(tid, step)]


def test_the_configuration_rebuilds_the_same_scheduler(scheduler: Scheduler) -> None:
    again = from_config(scheduler.config())
    assert type(again) is type(scheduler) and again.config() == scheduler.config()
    assert from_env({CONFIG_ENV: json.dumps(scheduler.config())}).config() == scheduler.config()


def test_decisions_depend_only_on_the_losses(scheduler: Scheduler) -> None:
    losses = {tid: float((tid * 7) % 11) for tid in range(12)}
    for tid in losses:
        for step in rungs(scheduler, tid):
            first = scheduler.decide(tid, step, losses)
            assert scheduler.decide(tid, step, dict(reversed(list(losses.items())))) == first
            assert from_config(scheduler.config()).decide(tid, step, losses) == first


def test_the_best_trial_and_a_lone_trial_go_on(scheduler: Scheduler) -> None:
    losses = {tid: float(tid) for tid in range(12)}
    for tid in range(12):
        for step in rungs(scheduler, tid):
            assert not scheduler.decide(tid, step, {tid: 5.0}).stop
            best_in_view = {other: loss for other, loss in losses.items()} | {tid: -1.0}
            assert not scheduler.decide(tid, step, best_in_view).stop


def test_a_nan_report_stops_the_trial_where_it_decides(scheduler: Scheduler) -> None:
    decided = [(tid, step) for tid in range(6) for step in rungs(scheduler, tid)]
    for tid, step in decided:
        assert scheduler.decide(tid, step, {tid: None, 99: 1.0}).stop
    assert decided or scheduler.name == "none"


def test_no_decision_at_or_after_the_last_epoch(scheduler: Scheduler) -> None:
    assert not any(scheduler.decides_at(tid, step) for tid in range(6) for step in (MAX, MAX + 1))


@pytest.mark.parametrize("knobs", [{"min_epochs": 0}, {"reduction_factor": 1}, {"max_epochs": 0}, {"min_epochs": 1.5}])
def test_bad_knobs_are_refused_with_their_value(knobs: dict) -> None:
    for name in SCHEDULERS:
        with pytest.raises(CaviarError, match=str(list(knobs.values())[0])):
            from_config({"name": name, "max_epochs": MAX} | knobs)


def test_unknown_or_unreadable_configurations() -> None:
    assert from_env({}).name == "none"
    with pytest.raises(CaviarError, match="'fifo'"):
        from_config({"name": "fifo"})
    with pytest.raises(CaviarError, match="not JSON"):
        from_env({CONFIG_ENV: "asha"})
    with pytest.raises(CaviarError, match="needs max_epochs"):
        from_config({"name": "hyperband"})


def test_asha_keeps_one_in_reduction_factor_at_each_rung() -> None:
    asha = Asha(min_epochs=1, reduction_factor=3, max_epochs=27)
    assert [s for s in range(30) if asha.decides_at(0, s)] == [1, 3, 9]
    losses = {tid: float(tid) for tid in range(9)}
    assert [tid for tid in losses if not asha.decide(tid, 3, losses).stop] == [0, 1, 2]
    # Asynchronous: judged on what has arrived so far (no waiting); the first of a rung goes on.
    assert not asha.decide(5, 1, {5: 5.0}).stop
    assert not asha.decide(5, 1, {5: 5.0, 6: 6.0}).stop
    assert asha.decide(5, 1, {4: 4.0, 5: 5.0}).stop
    assert asha.decide(5, 1, {3: 3.0, 4: 4.0, 5: 5.0}).cutoff == 3.0
    assert asha.decide(5, 1, {t: float(t) for t in range(7)}).cutoff == 1.0
    assert asha.decide(5, 1, {5: 5.0}).cutoff is None  # alone: nothing to compare with


def test_asha_ties_go_against_the_trial_arriving() -> None:
    """A loss equal to the bar does not take a place: trials 3 and 4 were stopped with 0.1035, so is 6."""
    asha = Asha(min_epochs=1, reduction_factor=3, max_epochs=9)
    chance = -0.1035  # a model that predicts one class scores that class's share of the validation set
    seen = {0: -0.108, 1: -0.094, 2: -0.086, 3: chance, 4: chance, 5: -0.094}
    assert asha.decide(3, 1, {t: seen[t] for t in (0, 1, 2, 3)}).stop
    tied = asha.decide(6, 1, seen | {6: chance})
    assert tied.stop and tied.cutoff == chance and tied.peers == 7
    assert not asha.decide(6, 1, seen | {6: chance - 1e-9}).stop  # strictly better takes the place
    assert asha.decide(1, 3, {0: 0.5, 1: 0.5}).stop  # the second at a rung must beat the first
    assert not asha.decide(1, 3, {0: 0.5, 1: 0.4}).stop


def test_hyperband_brackets_start_later_and_compare_within_their_bracket() -> None:
    hb = Hyperband(min_epochs=1, reduction_factor=3, max_epochs=9)
    assert hb.brackets == 3
    assert rungs(hb, 0) == [1, 3] and rungs(hb, 1) == [3] and rungs(hb, 2) == []
    # Trial 3 (bracket 0) is compared with trials 0 and 6 only; the better trials of other brackets do not count.
    losses = {0: 5.0, 1: 0.0, 2: 0.0, 3: 4.0, 4: 0.0, 6: 3.0}
    decision = hb.decide(3, 1, losses)
    assert decision.stop and decision.peers == 3 and decision.cutoff == 3.0


def test_median_needs_enough_peers_then_stops_the_worse_half() -> None:
    median = MedianScheduler(min_epochs=2, max_epochs=MAX)
    assert rungs(median, 0) == list(range(2, MAX))
    few = {tid: float(tid) for tid in range(MIN_PEERS - 1)}
    assert not median.decide(MIN_PEERS, 2, few | {MIN_PEERS: 100.0}).stop
    many = {tid: float(tid) for tid in range(MIN_PEERS + 1)}
    assert median.decide(10, 2, many | {10: 2.5}).stop
    assert not median.decide(10, 2, many | {10: 1.5}).stop


def paused(tid: int, step: int, reports: dict[int, float], **extra: object) -> dict:
    """A finished trial that asha paused at ``step`` with its checkpoint kept."""
    return {"tid": tid, "reports": {str(s): loss for s, loss in reports.items()},
            "result": {"status": "ok", "stopped": True, "stopped_at": step, "paused": True}} | extra


def test_asha_with_promotions_pauses_until_it_holds_a_place_at_the_rung() -> None:
    asha = Asha(min_epochs=1, reduction_factor=3, max_epochs=9, promote=True)
    assert asha.promotes and from_config(asha.config()).promotes
    assert Asha(max_epochs=9).config() == from_config({"name": "asha", "max_epochs": 9}).config()  # unchanged off
    # No place for the first two at a rung (3 // 3 = 1 place once there are 3), whatever their loss.
    assert asha.decide(0, 1, {0: 0.1}).stop and asha.decide(1, 1, {0: 0.5, 1: 0.1}).stop
    assert not asha.decide(2, 1, {0: 0.5, 1: 0.4, 2: 0.1}).stop
    assert asha.decide(2, 1, {0: 0.5, 1: 0.1, 2: 0.1}).stop  # ties still go against the trial arriving
    assert asha.decide(0, 1, {0: None, 1: 0.5, 2: 0.6}).stop


def due(asha: Asha, finished: list[dict], pending: list[dict] = ()) -> list[tuple[int, int]]:
    """``asha.promotions`` as ``(tid, step)``."""
    return [(doc["tid"], step) for doc, step in asha.promotions(finished, pending)]


def test_asha_promotes_the_paused_trials_that_now_hold_a_place_higher_rungs_first() -> None:
    asha = Asha(min_epochs=1, reduction_factor=3, max_epochs=9, promote=True)
    finished = [paused(0, 1, {1: 0.2}), paused(1, 1, {1: 0.9}), paused(2, 1, {1: 0.5})]
    assert due(asha, finished) == [(0, 1)]  # 3 at rung 1: one place, trial 0's
    assert asha.promotions(finished)[0][0] is finished[0]  # the paused trial's document, to continue it
    # Six at rung 1 (two places: trials 0 and 4), three at rung 3 (one place: trial 3, paused there);
    # trial 5 is still running, its reports count at the rungs.
    finished += [paused(3, 3, {1: 0.8, 2: 0.7, 3: 0.1}), paused(4, 1, {1: 0.3}),
                 paused(6, 3, {1: 0.85, 2: 0.6, 3: 0.3})]
    running = {"tid": 5, "reports": {"1": 0.6, "2": 0.5, "3": 0.4}, "result": {"status": "new"}}
    assert due(asha, finished, [running]) == [(3, 3), (0, 1), (4, 1)]
    # A trial continued once is not promoted again, whether its promotion is queued or finished.
    promotion = {"tid": 7, "continues": {"tid": 3, "step": 3, "reports": {}}, "reports": {}, "result": {}}
    assert due(asha, finished, [running, promotion]) == [(0, 1), (4, 1)]
    finished.append(promotion)
    assert due(asha, finished, [running]) == [(0, 1), (4, 1)]
    # The running trial scores better at rung 1 than trial 4, taking its place.
    assert due(asha, finished, [running | {"reports": {"1": 0.25}}]) == [(0, 1)]
    # A stopped trial without a checkpoint, or with a NaN at its rung, is never promoted (lists read anew).
    assert due(asha, [*finished[:4], {**finished[4], "result": {"status": "ok", "stopped": True, "stopped_at": 1}},
                      *finished[5:]], [running]) == [(0, 1)]
    assert Asha(max_epochs=9).promotions(finished) == []  # without promote: never
    assert due(asha, [paused(0, 1, {1: None}), paused(1, 1, {1: 0.5}), paused(2, 1, {1: 0.6})]) == []


def test_asha_promotions_read_each_finished_trial_once_and_agree_with_a_fresh_read() -> None:
    """Kept current from a growing list, the index gives what a scheduler reading every trial anew gives."""
    rng = random.Random(0)
    kept, finished = Asha(min_epochs=1, reduction_factor=3, max_epochs=9, promote=True), []
    for tid in range(300):
        continued = [d for d, _ in kept.promotions(finished)]
        if continued and rng.random() < 0.5:  # continue the most urgent paused trial, paused again higher up
            parent = continued[0]
            step = parent["result"]["stopped_at"] * 3
            reports = {str(s): parent["reports"][str(parent["result"]["stopped_at"])] - 0.01 * s
                       for s in range(parent["result"]["stopped_at"] + 1, step + 1)}
            doc = paused(tid, step, {}, continues={"tid": parent["tid"], "step": parent["result"]["stopped_at"]})
            doc["reports"] = reports
        else:
            loss = rng.choice([None, *[rng.random() for _ in range(9)]])
            doc = paused(tid, 1, {1: loss})
        finished.append(doc)
        assert due(kept, finished) == due(Asha(min_epochs=1, reduction_factor=3, max_epochs=9, promote=True),
                                          list(finished))
    assert any(d.get("continues") for d in finished) and due(kept, finished)


def test_hyperband_does_not_promote() -> None:
    with pytest.raises(CaviarError, match="hyperband does not promote"):
        from_config({"name": "hyperband", "max_epochs": MAX, "promote": True})
    with pytest.raises(CaviarError, match="promote must be true or false, got 'yes'"):
        from_config({"name": "asha", "promote": "yes"})
