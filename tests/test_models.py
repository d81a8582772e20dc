import torch

from prunelens.models import (
    WideResNetEncoder,
    build_classifier,
    count_parameters,
    load_model,
    save_model,
)


def test_wrn_16_2_parameter_counts():
    model = build_classifier({"depth": 16, "width": 2})
    # study-reference §1: 688,560 conv + 1,824 BN = 690,384; fc adds 1,290.
    assert count_parameters(model.encoder) == 690_384
    assert count_parameters(model) == 691_674
    convs = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    )
    assert convs == 688_560


def test_representation_and_logit_shapes():
    model = build_classifier({"depth": 16, "width": 2}).eval()
    logits, rep = model.represent(torch.randn(5, 3, 32, 32))
    assert logits.shape == (5, 10)
    assert rep.shape == (5, 128)
    assert (rep >= 0).all()  # post-ReLU global average pool


def test_sixteen_probes_with_the_reference_widths():
    enc = WideResNetEncoder(16, 2)
    probes = enc.forward_probes(torch.randn(2, 3, 32, 32))
    widths = [p.shape[1] for p in probes]
    assert widths == [
        16,
        32,
        32,
        32,
        32,
        32,
        64,
        64,
        64,
        64,
        64,
        128,
        128,
        128,
        128,
        128,
    ]


def test_bad_depth_is_refused():
    import pytest

    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNetEncoder(15, 2)


def test_save_load_round_trip(tmp_path):
    model = build_classifier({"depth": 10, "width": 1}).eval()
    meta = {"arch": {"depth": 10, "width": 1}, "seed": 3}
    save_model(tmp_path / "m.pt", model, meta)
    again, meta2 = load_model(tmp_path / "m.pt")
    x = torch.randn(3, 3, 32, 32)
    assert meta2 == meta
    assert torch.equal(model(x), again.eval()(x))
