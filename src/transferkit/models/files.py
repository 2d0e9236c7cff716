"""Weights on disk, read safely: safetensors or weights-only pickles, with keys checked and reported."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from transferkit.errors import ModelError
from transferkit.files import sha256_of_file

# Wrappers that training tools put around a state dict, and prefixes they put before its keys.
_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict")
_KEY_PREFIXES = ("module.", "model.")


def load_weights_into(model: torch.nn.Module, path: Path, head: torch.nn.Module | None = None) -> str:
    """Loads a state dict file onto `model` (its classifier may differ); returns the file's SHA-256.

    `head` is the model's output layer; by default timm's ``get_classifier()``.
    """
    state = strip_prefixes(read_state_dict(path))
    check_keys(model, state, path, head)
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # names, shapes and layouts fit, so this is not expected; still named
        raise ModelError(f"Cannot load the tensors of {path} onto {model.__class__.__name__}: {err}") from err
    return sha256_of_file(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors, or from a pickle that holds nothing but tensors; never runs pickled code.

    Raises:
        ModelError: no such file, or it is damaged, not a state dict, or would need code to run to load.
    """
    if not path.is_file():
        raise ModelError(f"No weights file at {path}.")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise ModelError(
                f"Cannot load weights from {path}: {err}. The file is damaged or not safetensors; "
                "copy or download it again."
            ) from err
    return _unwrap(_load_weights_only(path), path)


def _load_weights_only(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # A damaged file can look the same (a global's name with a flipped bit), so both causes are named.
        raise ModelError(
            f"Refused to load {path}: torch.load(weights_only=True) found more than tensors in it "
            f"({_unpickler_reason(err)}). Either it needs code to run while loading, which transferkit never "
            "does, or it is damaged. Save the state dict as safetensors (safetensors.torch.save_file) or "
            "with torch.save(model.state_dict()); copy or download a damaged file again."
        ) from err
    except Exception as err:  # damaged bytes make the zip reader and unpickler fail in many ways
        raise ModelError(
            f"Cannot load weights from {path} ({type(err).__name__}: {err}): the file is unreadable, "
            "damaged or not a PyTorch file. Copy or download it again."
        ) from err


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    # torch's message also suggests weights_only=False, which is what transferkit refuses to do.
    lines = [line.strip() for line in str(err).splitlines()]
    return next(
        (line for line in lines if line.startswith("WeightsUnpickler error")), lines[0] if lines else ""
    )


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    for key in _CONTAINER_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise ModelError(f"{path} holds no state dict (a mapping of names to tensors).")
    # Checked here, not when copying: load_state_dict copies every other tensor before it raises.
    sparse = sorted(key for key, value in loaded.items() if value.layout != torch.strided)
    if sparse:
        raise ModelError(
            f"{path} holds sparse tensors ({', '.join(sparse[:4])}); weights must be dense tensors."
        )
    return loaded


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _KEY_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state


def check_keys(
    model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, head: torch.nn.Module | None = None
) -> None:
    """Every body tensor must be there with its shape; the classifier may differ (a new head replaces it).

    `head` is the model's output layer; by default timm's ``get_classifier()``.
    """
    expected = model.state_dict()
    classifier = head if head is not None else model.get_classifier()  # type: ignore[operator]
    head_keys = {
        f"{name}.{param}"
        for name, module in model.named_modules()
        if module is classifier
        for param, _ in module.named_parameters()
    }
    for key in head_keys & set(state):
        if key in expected and state[key].shape != expected[key].shape:
            del state[key]
    missing = sorted(set(expected) - set(state) - head_keys)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ModelError(
            f"{path} does not fit {model.__class__.__name__}: {_listing('missing', missing)}, "
            f"{_listing('unexpected', unexpected)}, {_listing('wrong shape', wrong)}. "
            "Check the architecture (--arch, or the name after timm:): it must be the one the weights "
            "were trained with."
        )


def _listing(kind: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else "")
    return f"{len(keys)} {kind}" + (f" ({shown})" if keys else "")
