"""`fit` with the real packaged weights on a small ELPV subset (slow: real images, a real network)."""

import csv
from pathlib import Path

import numpy as np
import pytest

import transferkit


@pytest.mark.slow
def test_default_pipeline_on_an_elpv_subset(tmp_path: Path) -> None:
    run = transferkit.fit(
        data="elpv", epochs=1, image_size=96, batch_size=16, out=tmp_path, **{"data.subset": 240}
    )
    assert run.config.model.name == "efficientnet_lite0"
    with open(run.dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert abs(len(rows) - 60) <= 1  # the Deitsch test share of the subset, up to stratified rounding
    defective = {"p=2/3", "p=1"}
    binary = np.mean([(row["true"] in defective) == (_p_defective(row) > 0.5) for row in rows])
    assert run.headline["binary_accuracy"] == pytest.approx(binary)
    report = (run.dir / "report.md").read_text()
    assert "88.42 %" in report  # the paper's figure is printed next to ours


def _p_defective(row: dict[str, str]) -> float:
    return float(row["p_p=2/3"]) + float(row["p_p=1"])
