"""The WiSE-FT candidates of the default ELPV run on its validation images: each run whole against the
layers they share run once (`transferkit.export.shared_prefix`), side by side in one process.

ELPV's validation split (the default split: `make_splits(elpv, 0.1, 0.25, seed=0).val`, 197 images), the
packaged EfficientNet-Lite0 at 224 px with a new 4-class head, the default strategy's frozen layer groups,
the run's 4 test-time views, onnxruntime where it matches PyTorch. The fine-tuned weights are the start's
with every trainable tensor moved (speed does not depend on their values, so no training is needed).
Both ways run once to warm up, then alternate over `--repeats` rounds; the median time counts.

    python benchmarks/wise_ft_candidates.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Callable

import numpy as np
import torch

from default_fit import _cpu, _source_state
from predict_throughput import MODEL, RESULTS, interleaved_times
from transferkit.config import FitConfig
from transferkit.data import make_splits, resolve_data
from transferkit.data.decode import decode_image
from transferkit.export import Classifier
from transferkit.export.shared_prefix import shared_cut, view_logits_of_states, whole_network_logits
from transferkit.models import resolve_model
from transferkit.training.interpolation import ALPHAS, State, cloned, interpolate
from transferkit.training.strategies import create_strategy
from transferkit.transforms import create_augmentation


def candidates(class_names: list[str]) -> tuple[Classifier, list[State]]:
    """The default run's network and its WiSE-FT candidates between a start and moved trainable layers."""
    config = FitConfig()
    backbone = resolve_model(MODEL)
    backbone.reset_head(len(class_names))
    strategy = create_strategy(config.train)
    strategy.adapt(backbone)
    trained = {id(p) for group in strategy.param_groups(backbone) for p in group["params"]}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        start = cloned(backbone.model.state_dict())
        for parameter in backbone.model.parameters():
            if id(parameter) in trained:
                parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    tuned = backbone.model.state_dict()
    views = create_augmentation("d4", backbone.preprocessing.image_size).tta_views
    classifier = Classifier.from_network(
        backbone.model, class_names, backbone.preprocessing, views=views, data_channels=1
    )
    return classifier, [interpolate(start, tuned, alpha) for alpha in ALPHAS]


def each_whole(
    classifier: Classifier, states: list[State], pixels: np.ndarray
) -> Callable[[], list[np.ndarray]]:
    return lambda: [whole_network_logits(classifier, state, pixels, "auto") for state in states]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    source = resolve_data("elpv")
    val = make_splits(source, 0.1, 0.25, seed=0).val
    classifier, states = candidates(source.class_names)
    pixels = classifier.preprocess([decode_image(source.records[i].path, 1) for i in val])
    assert classifier.network is not None
    cut = shared_cut(classifier.network.model, states)
    whole = each_whole(classifier, states, pixels)
    shared = lambda: view_logits_of_states(classifier, states, pixels, "auto")  # noqa: E731
    load_before = os.getloadavg()
    seconds = interleaved_times(
        {"each candidate whole": whole, "shared lower layers once": shared}, args.repeats
    )
    load_after = os.getloadavg()
    difference = max(float(np.abs(a - b).max()) for a, b in zip(whole(), shared(), strict=True))
    rows = [
        {
            "way": name,
            "candidates": len(states),
            "images": len(val),
            "views": len(classifier.views),
            "seconds": f"{value:.2f}",
        }
        for name, value in seconds.items()
    ]
    with open(RESULTS / "wise_ft_candidates.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ratio = seconds["each candidate whole"] / seconds["shared lower layers once"]
    lines = [
        "# WiSE-FT candidates on ELPV's validation images: each whole, or their shared layers once",
        "",
        f"Command: `python benchmarks/wise_ft_candidates.py --repeats {args.repeats}` at commit "
        f"{_source_state()}",
        "",
        f"Machine: {_cpu()}, torch {torch.__version__} ({torch.get_num_threads()} threads); 1-minute load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        "",
        f"{len(states)} candidates (α = {', '.join(f'{a:g}' for a in ALPHAS)}), {len(val)} images x "
        f"{len(classifier.views)} test-time views, packaged {MODEL} at 224 px, the default strategy's frozen "
        f"layers (the candidates differ from `{cut}` on).",
        "",
        "| way | seconds (median) |",
        "| --- | ---: |",
        *(f"| {row['way']} | {row['seconds']} |" for row in rows),
        "",
        f"Shared layers once: {ratio:.2f}x faster; largest difference between the two ways' logits "
        f"{difference:.1e}.",
        "",
    ]
    (RESULTS / "wise_ft_candidates.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
