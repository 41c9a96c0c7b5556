"""Schedule semantics: A1111's syntax, resume and stop rules, and diffusers' warm-up schedules step by step."""

from __future__ import annotations

import random

import pytest
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup, get_scheduler

from services.common.errors import InvalidArgument
from services.trainer.schedule import LearnRateSchedule, ScheduleSegment, WarmupSchedule, parse_schedule

USERS = "0.05:10, 0.02:20, 0.01:60, 0.005:200, 0.002:500, 0.001:3000, 0.0005"  # the users' guide (recipe A)
RECIPE_B = "5e-2:100, 5e-3:500, 5e-4:1000, 5e-5:1500, 5e-6"

# --- A labelled re-implementation of A1111, written from a reading of its source, to compare against. -------------
# modules/textual_inversion/learn_schedule.py (LearnScheduleIterator, LearnRateScheduler) and the step loop of
# modules/textual_inversion/textual_inversion.py train_embedding, with a dataset large enough that the epoch loop
# never ends first, no interrupt, and `grad_accum` micro-batches per optimizer step.


def a1111_rates(learn_rate: str, max_steps: int, cur_step: int) -> list[tuple[float, int]]:
    rates = []
    for pair in learn_rate.split(","):
        if not pair.strip():
            continue
        tmp = pair.split(":")
        if len(tmp) == 2:
            step = int(tmp[1])
            if step > cur_step:
                rates.append((float(tmp[0]), min(step, max_steps)))
                if step > max_steps:
                    return rates
            elif step == -1:
                rates.append((float(tmp[0]), max_steps))
                return rates
        else:
            rates.append((float(tmp[0]), max_steps))
            return rates
    assert rates, "A1111 raises 'Invalid learning rate schedule'"
    return rates


def a1111_train(learn_rate: str, max_steps: int, initial_step: int, grad_accum: int = 1) -> tuple[list[float], int]:
    """The rate used for each optimizer step from `initial_step`, and the step where training stopped."""
    schedule = iter(a1111_rates(learn_rate, max_steps, initial_step))
    lr, end_step = next(schedule)  # the optimizer is created with the first rate
    finished = False
    step, used, micro = initial_step, [], 0
    for _ in range((max_steps + 2) * grad_accum):
        # scheduler.apply(optimizer, embedding.step) on every micro-batch
        if step >= end_step:
            try:
                lr, end_step = next(schedule)
            except StopIteration:
                finished = True
        if finished:
            return used, step
        micro += 1
        if micro % grad_accum != 0:
            continue
        used.append(lr)
        step += 1  # embedding.step += 1 after scaler.step(optimizer)
    raise AssertionError("A1111's loop did not stop")


# -------------------------------------------------------------------------------------------------------------------

USERS_RATES = {0: 0.05, 9: 0.05, 10: 0.02, 19: 0.02, 20: 0.01, 59: 0.01, 60: 0.005, 199: 0.005, 200: 0.002}
USERS_RATES |= {499: 0.002, 500: 0.001, 2999: 0.001}


@pytest.mark.parametrize("max_steps", [3000, 5000])
def test_users_schedule_rates(max_steps: int) -> None:
    schedule = LearnRateSchedule.parse(USERS, max_steps)
    for step, rate in USERS_RATES.items():
        assert schedule.rate_at(step) == rate, step
    assert schedule.final_step == max_steps and not schedule.ends_early
    if max_steps == 5000:
        assert schedule.rate_at(3000) == schedule.rate_at(4999) == 0.0005
    else:
        # 0.001:3000 reaches max_steps: the open 0.0005 never starts and training ends after step 2999.
        assert schedule.segments[-1] == ScheduleSegment(0.001, 3000)
        with pytest.raises(ValueError, match="outside"):
            schedule.rate_at(3000)


def test_recipe_b_segments_and_spans() -> None:
    schedule = LearnRateSchedule.parse(RECIPE_B, 3000)
    assert schedule.spans == (
        (0, 100, 5e-2),
        (100, 500, 5e-3),
        (500, 1000, 5e-4),
        (1000, 1500, 5e-5),
        (1500, 3000, 5e-6),
    )
    assert [schedule.rate_at(s) for s in (0, 99, 100, 499, 500, 999, 1000, 1499, 1500, 2999)] == [
        5e-2, 5e-2, 5e-3, 5e-3, 5e-4, 5e-4, 5e-5, 5e-5, 5e-6, 5e-6
    ]  # fmt: skip


def test_resume_skips_pairs_at_or_below_the_resume_step() -> None:
    resumed = LearnRateSchedule.parse(RECIPE_B, 3000, start_step=150)
    assert resumed.start_step == 150
    assert resumed.segments[0] == ScheduleSegment(5e-3, 500)
    assert resumed.spans[0] == (150, 500, 5e-3)
    assert resumed.rate_at(150) == 5e-3
    with pytest.raises(ValueError, match="outside"):
        resumed.rate_at(149)
    # Exactly at a boundary the finished pair is skipped too.
    assert LearnRateSchedule.parse(RECIPE_B, 3000, start_step=100).segments[0] == ScheduleSegment(5e-3, 500)
    assert LearnRateSchedule.parse(RECIPE_B, 3000, start_step=2000).segments == (ScheduleSegment(5e-6, 3000),)


def test_minus_one_runs_to_max_steps() -> None:
    schedule = LearnRateSchedule.parse("0.01:100, 0.001:-1", 1000)
    assert schedule.segments == (ScheduleSegment(0.01, 100), ScheduleSegment(0.001, 1000))
    assert LearnRateSchedule.parse("0.001:-1", 50).segments == (ScheduleSegment(0.001, 50),)
    assert LearnRateSchedule.parse("0.01:100, 0.001:-1", 1000, start_step=500).segments == (
        ScheduleSegment(0.001, 1000),
    )


def test_a_plain_rate_is_constant() -> None:
    schedule = parse_schedule("a1111", "0.005", 100)
    assert isinstance(schedule, LearnRateSchedule)
    assert schedule.segments == (ScheduleSegment(0.005, 100),)
    assert {schedule.rate_at(s) for s in range(100)} == {0.005}


def test_steps_beyond_max_steps_are_clipped_and_later_pieces_ignored() -> None:
    schedule = LearnRateSchedule.parse("0.05:10, 0.01:5000, 0.001", 3000)
    assert schedule.segments == (ScheduleSegment(0.05, 10), ScheduleSegment(0.01, 3000))
    assert schedule.final_step == 3000 and not schedule.ends_early
    assert LearnRateSchedule.parse("0.05:5000", 3000).segments == (ScheduleSegment(0.05, 3000),)


def test_a_schedule_without_an_open_end_stops_early() -> None:
    schedule = LearnRateSchedule.parse("0.05:100, 0.01:500", 3000)
    assert schedule.final_step == 500 and schedule.ends_early
    assert schedule.rate_at(499) == 0.01
    with pytest.raises(ValueError, match="outside"):
        schedule.rate_at(500)
    # As a gradient-clip schedule the last value holds: A1111 never checks the clip scheduler's `finished`.
    assert schedule.value_at(499) == schedule.value_at(500) == schedule.value_at(2999) == 0.01
    assert schedule.value_at(0) == 0.05


def _random_schedule(rng: random.Random) -> str:
    steps = sorted(rng.sample(range(1, 130), rng.randint(1, 5)))
    pieces = [f"{rng.choice(['0.05', '5e-3', '0.002', '1e-4'])}:{s}" for s in steps]
    tail = rng.choice(["", "bare", "minus_one", "bare_only"])
    if tail == "bare":
        pieces.append("0.0005")
    elif tail == "minus_one":
        pieces.append("0.0007:-1")
    elif tail == "bare_only":
        pieces = ["0.003"]
    return ", ".join(pieces)


def _a1111_overruns(text: str, max_steps: int) -> bool:
    pieces = [p.strip() for p in text.split(",") if p.strip()]
    at_max = [i for i, p in enumerate(pieces) if ":" in p and int(p.split(":")[1]) == max_steps]
    return bool(at_max) and at_max[0] < len(pieces) - 1


@pytest.mark.parametrize("grad_accum", [1, 3])
def test_matches_a1111_rates_and_stopping_step(grad_accum: int) -> None:
    rng = random.Random(20221003)
    compared = overruns = 0
    for _ in range(400):
        text = _random_schedule(rng)
        max_steps = rng.randint(1, 140)
        for start in sorted({0, rng.randrange(max_steps), rng.randrange(max_steps), max_steps - 1}):
            try:
                ours = LearnRateSchedule.parse(text, max_steps, start_step=start)
            except InvalidArgument as e:
                assert e.reason == "NOTHING_TO_TRAIN"
                with pytest.raises(AssertionError, match="Invalid learning rate schedule"):
                    a1111_rates(text, max_steps, start)
                continue
            used, stopped = a1111_train(text, max_steps, start, grad_accum)
            mine = [ours.rate_at(s) for s in range(start, ours.final_step)]
            if grad_accum == 1 and _a1111_overruns(text, max_steps):
                # The one deliberate difference: A1111 keeps a zero-length segment after a step equal to max_steps
                # and, with accumulation 1, trains one step past max_steps at the next rate. We stop at max_steps.
                overruns += 1
                assert stopped == max_steps + 1 and ours.final_step == max_steps
                used, stopped = used[:-1], max_steps
            assert (mine, ours.final_step) == (used, stopped), (text, max_steps, start)
            compared += 1
    assert compared > 1000  # the generator really exercises the comparison
    if grad_accum == 1:
        assert overruns > 0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (" , ,", "empty"),
        ("0.05:10, abc", "'abc' is not a rate"),
        (":10", "missing rate in ':10'"),
        ("0.05:ten", "'ten' in '0.05:ten' is not a step"),
        ("0.05:1.5", "'1.5' in '0.05:1.5' is not a step"),
        ("0.05:10:20", "more than one ':'"),
        ("-0.05", "negative"),
        ("nan", "not a finite rate"),
        ("0.05:20, 0.01:10", "steps must increase: '0.01:10' comes after step 20"),
        ("0.05:10, 0.01:10", "steps must increase"),
        ("0.05:0", "step 0 in '0.05:0' must be 1 or more, or -1"),
        ("0.05:-5", "step -5"),
        ("0.005, 0.001:100", "'0.005' runs to max_steps, so '0.001:100' after it would never be used"),
        ("0.05:5000, typo", "'typo' is not a rate"),  # A1111 would ignore it after the clipped step; we do not
    ],
)
def test_invalid_schedules_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        LearnRateSchedule.parse(text, 3000, field="spec.gradient_clip")
    assert fragment in info.value.message
    assert info.value.reason == "SCHEDULE_INVALID" and info.value.field == "spec.gradient_clip"


def test_nothing_to_train() -> None:
    with pytest.raises(InvalidArgument) as info:
        LearnRateSchedule.parse("0.05:100, 0.01:500", 3000, start_step=600)
    assert info.value.reason == "NOTHING_TO_TRAIN" and info.value.field == "spec.learning_rate"
    assert "ends at step 500" in info.value.message and "'0.05:100, 0.01:500, 0.01'" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        LearnRateSchedule.parse(USERS, 3000, start_step=3000)
    assert info.value.reason == "NOTHING_TO_TRAIN" and info.value.field == "spec.max_steps"
    with pytest.raises(InvalidArgument, match="at least 1 step") as info:
        LearnRateSchedule.parse(USERS, 0)
    assert info.value.field == "spec.max_steps"


# --- Warm-up schedules against diffusers' own LambdaLR --------------------------------------------------------------


def _diffusers_rates(scheduler_factory, base: float, steps: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base)
    scheduler = scheduler_factory(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 7, 60])
def test_warmup_schedules_equal_diffusers_get_scheduler(kind: str, warmup: int) -> None:
    base, total = 0.005, 60
    name = "constant_with_warmup" if kind == "constant" and warmup else kind

    def factory(opt):
        return get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total)

    expected = _diffusers_rates(factory, base, total)
    schedule = parse_schedule(kind, "0.005", total, warmup_steps=warmup)
    assert isinstance(schedule, WarmupSchedule)
    assert [schedule.rate_at(s) for s in range(total)] == expected
    assert schedule.final_step == total and not schedule.ends_early
    if warmup:
        assert schedule.rate_at(0) == 0.0  # diffusers' first warm-up step runs at rate 0


@pytest.mark.parametrize("cycles", [0.25, 1.5])
def test_cosine_cycles_equal_diffusers(cycles: float) -> None:
    def factory(opt):
        return get_cosine_schedule_with_warmup(opt, num_warmup_steps=5, num_training_steps=40, num_cycles=cycles)

    expected = _diffusers_rates(factory, 0.01, 40)
    schedule = parse_schedule("cosine", "0.01", 40, warmup_steps=5, cycles=cycles)
    assert [schedule.rate_at(s) for s in range(40)] == expected


def test_warmup_resume_keeps_the_same_rates() -> None:
    fresh = parse_schedule("linear", "0.01", 100, warmup_steps=10)
    resumed = parse_schedule("linear", "0.01", 100, warmup_steps=10, start_step=40)
    assert [resumed.rate_at(s) for s in range(40, 100)] == [fresh.rate_at(s) for s in range(40, 100)]
    with pytest.raises(ValueError, match="outside"):
        resumed.rate_at(39)


@pytest.mark.parametrize(
    ("kind", "text", "kwargs", "field", "fragment"),
    [
        ("linear", "0.05:10, 0.01", {}, "spec.learning_rate", "choose the A1111 scheduler"),
        ("cosine", "", {}, "spec.learning_rate", "empty"),
        ("constant", "fast", {}, "spec.learning_rate", "'fast' is not a rate"),
        ("linear", "0.01", {"warmup_steps": 200}, "spec.warmup_steps", "between 0 and max_steps (100)"),
        ("linear", "0.01", {"warmup_steps": -1}, "spec.warmup_steps", "between 0"),
        ("a1111", "0.01", {"warmup_steps": 10}, "spec.warmup_steps", "warms up in its own pieces"),
        ("cosine", "0.01", {"cycles": 0.0}, "spec.lr_scheduler", "positive"),
        ("step", "0.01", {}, "spec.lr_scheduler", "use one of a1111, constant, linear, cosine"),
        ("linear", "0.01", {"start_step": 100}, "spec.max_steps", "already at step 100"),
    ],
)
def test_invalid_warmup_schedules(kind: str, text: str, kwargs: dict, field: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_schedule(kind, text, 100, **kwargs)
    assert fragment in info.value.message and info.value.field == field
