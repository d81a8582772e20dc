import pytest
import torch
from torch import nn

from prunelens.models import build_classifier
from prunelens.pruning import (
    GMP,
    GMPSchedule,
    gmp_fractions,
    gmp_targets,
    make_permanent,
    measured_sparsity,
    prune_global,
    prune_targets,
)


def _simulate(schedule: GMPSchedule, steps: int) -> tuple[list[int], float]:
    """Independent re-statement of the authors' loop (study-reference §12)."""
    g = gmp_fractions(
        gmp_targets(schedule.final, schedule.begin, schedule.end, schedule.frequency)
    )
    on, k, fired, remaining = False, 0, [], 1.0
    for step in range(1, steps + 1):
        if step == schedule.begin:
            on = True
        if on and step % schedule.frequency == 0 and k < len(g):
            fired.append(step)
            remaining *= 1 - g[k]
            k += 1
        if step == schedule.end:
            on = False
    return fired, 1 - remaining


def test_cubic_targets_exact_values():
    s = gmp_targets(0.9, begin=0 + 1, end=3 + 1, frequency=1)
    # s_k = 0.9 (1 - (1 - k/3)^3), k = 0..3
    assert s == pytest.approx(
        [0.0, 0.9 * (1 - (2 / 3) ** 3), 0.9 * (1 - (1 / 3) ** 3), 0.9]
    )
    g = gmp_fractions(s)
    assert g[0] == 0.0
    assert g[1] == pytest.approx(s[1])
    assert g[2] == pytest.approx((s[2] - s[1]) / (1 - s[1]))


@pytest.mark.parametrize(
    ("begin", "end", "freq", "n_events", "first", "last", "achieved"),
    [
        # study-reference §5.2 table: (schedule, events, first/last step, sparsity)
        (1000, 20000, 500, 39, 1000, 20000, 0.90000),
        (125, 2476, 62, 37, 186, 2418, 0.89988),
        (2440, 4760, 62, 37, 2480, 4712, 0.89995),
        (500, 10000, 250, 39, 500, 10000, 0.90000),
    ],
)
def test_gmp_firing_steps_match_the_reference(
    begin, end, freq, n_events, first, last, achieved
):
    sched = GMPSchedule(final=0.9, begin=begin, end=end, frequency=freq)
    fired, sparsity = _simulate(sched, end + 100)
    assert len(fired) == n_events
    assert (fired[0], fired[-1]) == (first, last)
    assert sched.firing_steps() == fired
    assert sparsity == pytest.approx(achieved, abs=5e-6)


def test_gmp_driver_prunes_layerwise_to_target():
    torch.manual_seed(0)
    model = build_classifier({"depth": 10, "width": 1})
    sched = GMPSchedule(final=0.5, begin=2, end=10, frequency=2)
    gmp = GMP(sched, prune_targets(model))
    fired = [s for s in range(1, 15) if gmp.step(s)]
    assert fired == sched.firing_steps() == [2, 4, 6, 8, 10]
    # every layer carries (about) the same sparsity under the layer-wise rule
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert float((m.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.02)
    assert measured_sparsity(model) == pytest.approx(0.5, abs=0.005)


def test_global_pruning_differs_per_layer_but_hits_the_total():
    torch.manual_seed(0)
    model = build_classifier({"depth": 10, "width": 1})
    with torch.no_grad():  # make one layer much larger in magnitude
        model.encoder.conv1.weight.mul_(100)
    targets = prune_targets(model)
    prune_global(targets, 0.7)
    total = sum(getattr(m, n).numel() for m, n in targets)
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in targets)
    assert zeros == round(0.7 * total)
    assert float((model.encoder.conv1.weight == 0).float().mean()) < 0.05
    make_permanent(model)
    assert not hasattr(model.encoder.conv1, "weight_mask")
    assert measured_sparsity(model) == pytest.approx(0.7, abs=0.005)


def test_gmp_state_round_trip():
    model = build_classifier({"depth": 10, "width": 1})
    gmp = GMP(GMPSchedule(0.5, 2, 10, 2), prune_targets(model))
    for s in range(1, 6):
        gmp.step(s)
    other = GMP(
        GMPSchedule(0.5, 2, 10, 2),
        prune_targets(build_classifier({"depth": 10, "width": 1})),
    )
    other.load_state_dict(gmp.state_dict())
    assert other.events == gmp.events == 2


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="begin"):
        gmp_targets(0.5, begin=10, end=5, frequency=1)
    with pytest.raises(ValueError, match="final"):
        gmp_targets(1.0, begin=1, end=5, frequency=1)


def test_global_pruning_equals_torch_and_works_channels_last():
    torch.manual_seed(1)
    ours, ref = (
        build_classifier({"depth": 10, "width": 1}),
        build_classifier({"depth": 10, "width": 1}),
    )
    ref.load_state_dict(ours.state_dict())
    ours = ours.to(memory_format=torch.channels_last)
    for amount in (0.3, 0.5):  # the second call prunes a fraction of the rest
        prune_global(prune_targets(ours), amount)
        torch.nn.utils.prune.global_unstructured(
            prune_targets(ref), torch.nn.utils.prune.L1Unstructured, amount=amount
        )
    for (m1, n1), (m2, n2) in zip(prune_targets(ours), prune_targets(ref), strict=True):
        assert torch.equal(getattr(m1, f"{n1}_mask"), getattr(m2, f"{n2}_mask"))
