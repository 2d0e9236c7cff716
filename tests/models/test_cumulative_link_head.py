"""The cumulative-link head: a proper, rank-consistent distribution over ordered classes, in any network."""

import pytest
import torch

from transferkit.errors import ModelError
from transferkit.models import resolve_model
from transferkit.models.ordinal import (
    CumulativeLinkHead,
    class_log_probabilities,
    install_ordinal_head,
    is_ordinal,
    thresholds,
)


def _random_head(classes: int, scale: float, seed: int = 0) -> CumulativeLinkHead:
    torch.manual_seed(seed)
    head = CumulativeLinkHead(6, classes)
    with torch.no_grad():
        head.weight.normal_(0, scale)
        head.cutpoints.normal_(0, scale)
    return head


@pytest.mark.parametrize("classes", [2, 3, 4, 7])
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_probabilities_are_a_distribution_and_equal_the_cumulative_differences(
    classes: int, scale: float
) -> None:
    head = _random_head(classes, scale)
    features = torch.randn(50, 6, dtype=torch.float64) * 5
    head = head.double()
    log_probabilities = head(features)
    assert torch.isfinite(log_probabilities).all()  # no log 0, even with scores far past the thresholds
    probabilities = log_probabilities.exp()
    torch.testing.assert_close(probabilities.sum(1), torch.ones(50, dtype=torch.float64))
    at_most = torch.sigmoid(thresholds(head.cutpoints) - features @ head.weight.T)  # P(y <= k)
    ones, zeros = torch.ones(50, 1, dtype=torch.float64), torch.zeros(50, 1, dtype=torch.float64)
    reference = torch.cat([at_most, ones], 1) - torch.cat([zeros, at_most], 1)
    torch.testing.assert_close(probabilities, reference, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_cumulative_probabilities_are_rank_consistent(seed: int) -> None:
    head = _random_head(6, scale=5.0, seed=seed)
    above = head.cumulative(torch.randn(200, 6) * 4)  # P(y > k), k = 0 .. 4
    assert (above[:, 1:] <= above[:, :-1]).all()
    assert (thresholds(head.cutpoints).diff() > 0).all()


def test_the_gradient_is_finite_far_from_the_thresholds() -> None:
    cutpoints = torch.tensor([0.0, -30.0, 2.0], requires_grad=True)  # a gap of softplus(-30) ~ 1e-13
    scores = torch.tensor([[-80.0], [0.0], [80.0]], requires_grad=True)
    class_log_probabilities(scores, cutpoints).sum().backward()
    assert torch.isfinite(cutpoints.grad).all() and torch.isfinite(scores.grad).all()  # type: ignore[arg-type]


def test_a_timm_network_gets_the_head_in_place_of_its_classifier() -> None:
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(4, ordinal=True)
    head = backbone.head()
    assert isinstance(head, CumulativeLinkHead) and head.out_features == 4
    assert is_ordinal(backbone.model)
    output = backbone.model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(output.exp().sum(1), torch.ones(2))
    assert backbone.layer_groups()[-1] == list(head.parameters())  # the head is the top group
    backbone.reset_head(3)  # the next transfer: a plain linear head again
    assert isinstance(backbone.head(), torch.nn.Linear) and not is_ordinal(backbone.model)


def test_a_classifier_that_is_not_linear_is_refused() -> None:
    class Convolutional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = torch.nn.Conv2d(4, 3, 1)

        def get_classifier(self) -> torch.nn.Module:
            return self.classifier

    with pytest.raises(ModelError, match="needs a linear one"):
        install_ordinal_head(Convolutional())


def test_one_class_is_no_ordinal_task() -> None:
    with pytest.raises(ModelError, match="at least two classes"):
        CumulativeLinkHead(4, 1)
