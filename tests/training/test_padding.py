import pytest
import torch
from torch import nn

from transferkit.training.padding import ExplicitlyPaddedConv2d, explicit_padding, explicit_pads


def _outputs_and_gradients(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    images = images.clone().requires_grad_(True)
    model.zero_grad()
    output = model(images)
    output.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert images.grad is not None
    return [output.detach(), images.grad, *grads]


@pytest.mark.parametrize("size", [2, 3, 4, 8])
def test_explicit_padding_gives_the_same_outputs_and_gradients(size: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),
        nn.Conv2d(8, 8, 5, padding=2, groups=8),
        nn.Conv2d(8, 8, (5, 3), padding=(2, 1)),
    )
    images = torch.randn(2, 4, size, size).contiguous(memory_format=torch.channels_last)
    plain = _outputs_and_gradients(model, images)
    with explicit_padding(model):
        assert all(type(m) is ExplicitlyPaddedConv2d for m in model)
        padded = _outputs_and_gradients(model, images)
    assert all(type(m) is nn.Conv2d for m in model)  # plain again for export and inference
    for a, b in zip(plain, padded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_only_inputs_smaller_than_the_kernel_are_padded_and_only_while_training() -> None:
    conv = nn.Conv2d(3, 3, 5, padding=2)
    small, large = torch.zeros(1, 3, 3, 3), torch.zeros(1, 3, 5, 5)
    assert explicit_pads(conv, small) == (2, 2, 2, 2)
    assert explicit_pads(conv, large) is None
    with torch.no_grad():
        assert explicit_pads(conv, small) is None
    assert explicit_pads(nn.Conv2d(3, 3, 5), small) is None  # nothing to pad
    assert explicit_pads(nn.Conv2d(3, 3, 5, padding=2, padding_mode="reflect"), small) is None


def test_the_swap_keeps_parameters_and_is_undone_on_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1))
    before = [id(p) for p in model.parameters()]
    with pytest.raises(RuntimeError), explicit_padding(model):
        assert [id(p) for p in model.parameters()] == before
        raise RuntimeError("stop")
    assert type(model[0]) is nn.Conv2d
