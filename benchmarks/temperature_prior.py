"""Temperature scaling with and without its prior, on held-out sets of known temperature.

`fit_temperature` is a MAP estimate under a normal prior on log T around 0 (sd 0.5). This draws held-out
sets whose labels follow softmax(logits / T) for a known T, fits T on each with and without the prior,
and reports the error of log T (root mean square over draws) and how often the fit stopped at its
bound, by number of images and test-time views. With several views each view's logits are the image's
plus noise, and the labels follow the view-averaged tempered probabilities, as the predictor averages.

    python benchmarks/temperature_prior.py --draws 200
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from default_fit import RESULTS, _commit, _cpu, write_csv
from transferkit.evaluation.calibration import (
    LOG_TEMPERATURE_PRIOR_SD,
    fit_temperature,
    tempered_probabilities,
)

NAME = "temperature_prior"
IMAGES = (10, 20, 50, 200, 1000)
TEMPERATURES = (0.5, 1.0, 2.5)
VIEWS = (1, 2)
CLASSES = 5
LOGIT_SD = 3.0  # spread of the logits: most images are predicted with some confidence
VIEW_NOISE_SD = 1.0  # how far one view's logits stray from the image's
BOUND = 0.05  # the smallest temperature the fit searches


def draw(
    rng: np.random.Generator, images: int, views: int, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """View logits (views, images, classes) and labels drawn from their tempered, view-averaged softmax."""
    logits = rng.normal(0, LOGIT_SD, (1, images, CLASSES))
    view_logits = logits + (rng.normal(0, VIEW_NOISE_SD, (views, images, CLASSES)) if views > 1 else 0.0)
    probabilities = tempered_probabilities(view_logits, temperature)
    labels = (probabilities.cumsum(axis=1) < rng.random((images, 1))).sum(axis=1)
    return view_logits, np.minimum(labels, CLASSES - 1)


def row(
    rng: np.random.Generator, images: int, views: int, temperature: float, draws: int
) -> dict[str, float]:
    """Errors of log T with and without the prior over `draws` held-out sets."""
    fitted: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(draws):
        logits, labels = draw(rng, images, views, temperature)
        fitted["without"].append(fit_temperature(logits, labels, prior_sd=None))
        fitted["with"].append(fit_temperature(logits, labels))
    result: dict[str, float] = {"images": images, "views": views, "temperature": temperature}
    for name, values in fitted.items():
        errors = np.log(values) - np.log(temperature)
        result[f"rmse_log_t_{name}"] = float(np.sqrt(np.mean(errors**2)))
        result[f"median_t_{name}"] = float(np.median(values))
        result[f"at_bound_{name}"] = float(np.mean(np.asarray(values) <= BOUND * 1.01))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [
        row(rng, images, views, temperature, args.draws)
        for views in VIEWS
        for temperature in TEMPERATURES
        for images in IMAGES
    ]
    write_csv(NAME, rows)
    lines = [
        "# Temperature scaling with and without its prior on log T",
        "",
        f"Command: `python benchmarks/temperature_prior.py --draws {args.draws}` at commit {_commit()}; "
        f"{_cpu()}; load average {os.getloadavg()[1]:.1f} (5 min) when written.",
        f"Held-out sets of {CLASSES} classes, logits normal with sd {LOGIT_SD:g} (each view's plus noise of "
        f"sd {VIEW_NOISE_SD:g}), labels drawn from the tempered, view-averaged softmax at the true T; "
        f"{args.draws} sets a row. Prior: log T normal around 0 with sd {LOG_TEMPERATURE_PRIOR_SD:g}. "
        f"RMSE: of log T against the true one; at bound: the share of fits at T = {BOUND:g}.",
        "",
        "| views | true T | images | RMSE log T, without | with prior | median T, without | with prior "
        "| at bound, without | with prior |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['views']} | {r['temperature']:g} | {r['images']} | {r['rmse_log_t_without']:.3f} | "
        f"{r['rmse_log_t_with']:.3f} | {r['median_t_without']:.2f} | {r['median_t_with']:.2f} | "
        f"{r['at_bound_without']:.0%} | {r['at_bound_with']:.0%} |"
        for r in rows
    ]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
