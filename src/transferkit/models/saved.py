"""A bundle's config.json, read and checked before anything is built: torch-free, so that predicting with
an exported model, serving it and reading a run's ancestry start quickly."""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path
from typing import Any

from transferkit.data.decode import IMAGE_CHANNELS
from transferkit.errors import ModelError
from transferkit.transforms.preprocessing import CROP_MODES, RESAMPLING, Preprocessing


def find_bundle(path: Path) -> Path:
    """The bundle folder of a run directory (``RUN/model``), or `path` itself when it is a bundle."""
    for candidate in (path / "model", path):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise ModelError(
        f"{path} is neither a transferkit run directory nor a bundle: neither model/ nor the folder itself "
        "holds config.json and model.safetensors."
    )


def read_saved_config(path: Path) -> dict[str, Any]:
    """A bundle's config.json, checked for what rebuilding its network needs, before anything is built.

    Raises:
        ModelError: the file is unreadable or not JSON, or a key is missing or of the wrong type.
    """
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON or not UTF-8
        raise ModelError(f"Cannot read {path}: {err}. Export the run again.") from err
    if not isinstance(config, dict):
        raise ModelError(f"{path} holds a JSON {type(config).__name__}, not an object; export the run again.")
    missing = {"architecture", "num_classes", "preprocessing"} - set(config)
    if missing:
        raise ModelError(f"{path} lacks {sorted(missing)}; it was not written by transferkit's export.")
    classes = config["num_classes"]
    checks = [
        ("architecture", "a name", lambda value: isinstance(value, str) and bool(value)),
        ("num_classes", "a positive integer", lambda value: _is_int(value) and value >= 1),
        ("family", "a name", lambda value: isinstance(value, str)),
        ("architecture_config", "an object or null", lambda value: value is None or isinstance(value, dict)),
        ("model_sha256", "a SHA-256 or null", lambda value: value is None or isinstance(value, str)),
        ("ensemble_members", "2 to 64 members", lambda value: _is_int(value) and 2 <= value <= 64),
        ("task", "classification or ordinal", lambda value: value in ("classification", "ordinal")),
        # Bounds num_classes by the file itself, so no network of an absurd size is built.
        ("label_names", f"a list of {classes} names", lambda value: _is_names(value, classes)),
        ("other_tasks", "a list of {name, label_names, temperature} objects", _is_other_tasks),
    ]
    for key, expected, valid in checks:
        if key in config and not valid(config[key]):
            raise _invalid(path, key, expected, config[key])
    return config


def saved_preprocessing(config: dict[str, Any], path: Path) -> Preprocessing:
    """The preprocessing a bundle's config.json records, checked so that using it cannot fail later."""
    values = config.get("preprocessing")
    if not isinstance(values, dict):
        raise _invalid(path, "preprocessing", "an object", values)
    channels = _channels(values.get("input_size"), path)
    for key in ("mean", "std"):
        value = values.get(key)
        if not (isinstance(value, list) and len(value) == channels and all(map(_is_finite, value))):
            raise _invalid(path, f"preprocessing.{key}", f"{channels} numbers, one per channel", value)
    if min(values["std"]) <= 0:
        raise _invalid(path, "preprocessing.std", "positive", values["std"])
    interpolation = values.get("interpolation")
    if not (isinstance(interpolation, str) and interpolation in RESAMPLING):
        raise _invalid(path, "preprocessing.interpolation", f"one of {', '.join(RESAMPLING)}", interpolation)
    if not (_is_finite(values.get("crop_pct")) and values["crop_pct"] > 0):
        raise _invalid(path, "preprocessing.crop_pct", "a positive number", values.get("crop_pct"))
    if values.get("crop_mode", "center") not in CROP_MODES:
        raise _invalid(
            path, "preprocessing.crop_mode", f"one of {', '.join(CROP_MODES)}", values["crop_mode"]
        )
    return Preprocessing.from_dict(values)


def _channels(size: object, path: Path) -> int:
    if not (isinstance(size, list) and len(size) == 3 and all(_is_int(n) and n >= 1 for n in size)):
        raise _invalid(path, "preprocessing.input_size", "[channels, height, width], positive", size)
    if size[0] not in IMAGE_CHANNELS:
        raise _invalid(path, "preprocessing.input_size", "for 1, 3 or 4 channels", size)
    return int(size[0])


def _invalid(path: Path, key: str, expected: str, value: object) -> ModelError:
    return ModelError(f"{path}: {key} must be {expected}, not {reprlib.repr(value)}. Export the run again.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


def _is_names(value: object, count: object) -> bool:
    return isinstance(value, list) and len(value) == count and all(isinstance(name, str) for name in value)


def _is_other_tasks(value: object) -> bool:
    """config.json's ``other_tasks``: each other label's name, class names and temperature."""
    return isinstance(value, list) and all(
        isinstance(task, dict)
        and isinstance(task.get("name"), str)
        and isinstance(task.get("label_names"), list)
        and 1 <= len(task["label_names"]) <= 100_000  # bounds the head built from it
        and _is_names(task["label_names"], len(task["label_names"]))
        and _is_finite(task.get("temperature"))
        and task["temperature"] > 0
        for task in value
    )


def saved_ancestry(saved: dict[str, Any]) -> tuple[dict[str, str | None], ...]:
    """The models a bundle descends from, nearest first; bundles written before ancestry was recorded
    name only their own start."""
    if "ancestry" in saved:
        return tuple(saved["ancestry"])
    start = saved.get("source_model")
    return (start,) if isinstance(start, dict) else ()
