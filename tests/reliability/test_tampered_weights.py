"""Damaged and tampered weights and bundles: a clear ModelError, never a raw safetensors, pickle, JSON
or KeyError exception, and never a model with some of its weights loaded.

Three loaders are covered: `transferkit.load(bundle)`, ``run:BUNDLE`` (a bundle as the next pretrained
model) and ``file:WEIGHTS --arch NAME`` (bare weight files, safetensors or PyTorch pickles).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

import transferkit
from transferkit.errors import ModelError, TransferkitError
from transferkit.models import resolve_model
from transferkit.models.files import load_weights_into, read_state_dict

TimeLimit = Callable[[float], AbstractContextManager[None]]
ARCH = "test_efficientnet"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# torch.load warns about the pickle protocol and TypedStorage of the damaged files it reads.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _weights(kind: str) -> bytes:
    torch.manual_seed(0)
    state = timm.create_model(ARCH, num_classes=3).state_dict()
    if kind == ".safetensors":
        return save({key: value.contiguous() for key, value in state.items()})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


WEIGHTS = {kind: _weights(kind) for kind in (".safetensors", ".pth")}


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` cut short, with bits flipped (anywhere, or in the first 4 KiB where headers live), or with
    a run of bytes overwritten."""
    kind = draw(st.sampled_from(["truncate", "flip", "flip header", "overwrite"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    changed = bytearray(data)
    if kind == "overwrite":
        start = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=64))
        changed[start : start + len(patch)] = patch
        return bytes(changed[: len(data)])
    end = 4096 if kind == "flip header" else len(data)
    for _ in range(draw(st.integers(1, 8))):
        changed[draw(st.integers(0, end - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(changed)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("damaged")


def _copy(bundle: Path, to: Path) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    return Path(shutil.copytree(bundle, to))


def _rewrite_config(bundle: Path, change: Callable[[dict[str, Any]], object]) -> None:
    config = json.loads((bundle / "config.json").read_text())
    change(config)
    (bundle / "config.json").write_text(json.dumps(config))


# Weight files, fuzzed.


@pytest.mark.fuzz
@FUZZ
@given(data=st.data(), suffix=st.sampled_from(sorted(WEIGHTS)))
def test_damaged_weight_files_load_fully_or_raise_a_model_error(
    scratch: Path, data: st.DataObject, suffix: str, time_limit: TimeLimit
) -> None:
    path = scratch / f"weights{suffix}"
    path.write_bytes(data.draw(damaged(WEIGHTS[suffix])))
    model = timm.create_model(ARCH, num_classes=3)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with time_limit(20):
        try:
            load_weights_into(model, path)
        except ModelError as err:
            assert str(path) in str(err)
            # Nothing was copied: keys, shapes and file contents are all checked before loading.
            assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


@pytest.mark.fuzz
@FUZZ
@given(data=st.data())
def test_a_damaged_bundle_is_refused_by_its_hash(
    bundle: Path, scratch: Path, data: st.DataObject, time_limit: TimeLimit
) -> None:
    original = (bundle / "model.safetensors").read_bytes()
    damage = data.draw(damaged(original))
    assume(damage != original)  # two flips of the same bit undo each other
    copy = _copy(bundle, scratch / "bundle")
    (copy / "model.safetensors").write_bytes(damage)
    with time_limit(20), pytest.raises(ModelError, match=r"does not match the SHA-256 in its config\.json"):
        transferkit.load(copy, device="cpu")
    with time_limit(20), pytest.raises(ModelError, match=r"does not match the SHA-256"):
        resolve_model(f"run:{copy}")


@pytest.mark.fuzz
@FUZZ
@given(data=st.data())
def test_a_damaged_bundle_without_a_hash_loads_fully_or_raises_a_model_error(
    bundle: Path, scratch: Path, data: st.DataObject, time_limit: TimeLimit
) -> None:
    # Bundles written before model_sha256 existed: the safetensors checks alone must hold.
    copy = _copy(bundle, scratch / "bundle")
    _rewrite_config(copy, lambda config: config.pop("model_sha256"))
    (copy / "model.safetensors").write_bytes(data.draw(damaged((bundle / "model.safetensors").read_bytes())))
    with time_limit(20):
        try:
            transferkit.load(copy, device="cpu")
        except ModelError as err:
            assert str(copy) in str(err)


def test_a_state_dict_with_names_that_are_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({0: torch.zeros(1)}, path)  # was: AttributeError from str.startswith on an int key
    with pytest.raises(ModelError, match=r"holds no state dict \(a mapping of names to tensors\)"):
        resolve_model(f"file:{path}", arch=ARCH)


def test_a_sparse_tensor_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    model = timm.create_model(ARCH, num_classes=3)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    state = {key: torch.ones_like(value) for key, value in before.items()}
    state["conv_stem.weight"] = state["conv_stem.weight"].to_sparse()
    torch.save(state, tmp_path / "weights.pth")
    with pytest.raises(ModelError, match=r"weights\.pth holds sparse tensors \(conv_stem\.weight\)"):
        load_weights_into(model, tmp_path / "weights.pth")
    # load_state_dict would have copied every other tensor (all ones) before raising on this one.
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-1000], id="truncated-zip"),
        pytest.param(lambda data: data.replace(b"collections", b"collectionz", 1), id="renamed-global"),
        pytest.param(
            lambda data: data.replace(b"_rebuild_tensor_v2", b"_rebuild_tensor_v3", 1), id="bad-name"
        ),
    ],
)
def test_a_damaged_pytorch_file_is_named_and_not_called_malicious_only(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(damage(WEIGHTS[".pth"]))
    with pytest.raises(ModelError, match=r"weights\.pth.*(damaged|Refused)") as raised:
        resolve_model(f"file:{path}", arch=ARCH)
    assert "weights_only=False" not in str(raised.value)  # never advise the unsafe way out


def test_bytes_that_break_the_unpickler_are_model_errors(tmp_path: Path) -> None:
    # torch's weights-only unpickler raises IndexError, KeyError, UnicodeDecodeError ... on such bytes;
    # they used to escape read_state_dict as they were.
    data = WEIGHTS[".pth"]
    start = data.index(b"data.pkl") + len(b"data.pkl")  # the pickle follows its zip entry's name
    path = tmp_path / "weights.pth"
    raw_errors = set()
    for offset in range(start, start + 300):
        changed = bytearray(data)
        changed[offset] ^= 0x80
        path.write_bytes(bytes(changed))
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raw_errors.add(type(err).__name__)
            with pytest.raises(ModelError, match=r"weights\.pth"):
                read_state_dict(path)
    assert raw_errors - {"UnpicklingError", "RuntimeError"}, "no flip broke the unpickler: widen the range"


# Bundles: every way config.json can be wrong, for the two loaders that read it.


CONFIG_DAMAGE: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing": (lambda b: (b / "config.json").unlink(), r"neither a transferkit run directory nor a bundle"),
    "empty": (
        lambda b: (b / "config.json").write_text(""),
        r"Cannot read .*config\.json.*Export the run again",
    ),
    "truncated": (
        lambda b: (b / "config.json").write_bytes((b / "config.json").read_bytes()[:200]),
        r"Cannot read .*config\.json",
    ),
    "not UTF-8": (lambda b: (b / "config.json").write_bytes(b"\xff\xfe{}"), r"Cannot read .*config\.json"),
    "a list": (lambda b: (b / "config.json").write_text("[1, 2]"), r"holds a JSON list, not an object"),
    "a number": (lambda b: (b / "config.json").write_text("5"), r"holds a JSON int, not an object"),
    "nested deep": (lambda b: (b / "config.json").write_text("[" * 100_000), r"Cannot read .*config\.json"),
}
KEY_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "no architecture": (lambda c: c.pop("architecture"), r"lacks \['architecture'\]"),
    "no num_classes": (lambda c: c.pop("num_classes"), r"lacks \['num_classes'\]"),
    "no preprocessing": (lambda c: c.pop("preprocessing"), r"lacks \['preprocessing'\]"),
    "architecture a number": (lambda c: c.update(architecture=5), r"architecture must be a name, not 5"),
    "unknown architecture": (
        lambda c: c.update(architecture="no_such_net"),
        r"Cannot build the timm architecture 'no_such_net' with 3 classes: Unknown model",
    ),
    "unknown family": (
        lambda c: c.update(family="keras"),
        r"Unknown model family 'keras'\. Valid model family names: hf, timm, torchvision",
    ),
    "family null": (lambda c: c.update(family=None), r"family must be a name, not None"),
    "num_classes text": (
        lambda c: c.update(num_classes="3"),
        r"num_classes must be a positive integer, not '3'",
    ),
    "num_classes zero": (lambda c: c.update(num_classes=0), r"num_classes must be a positive integer, not 0"),
    "num_classes huge": (
        lambda c: c.update(num_classes=10**9),
        r"label_names must be a list of 1000000000 names",
    ),
    "labels not a list": (lambda c: c.update(label_names="cat"), r"label_names must be a list of 3 names"),
    "labels numbers": (lambda c: c.update(label_names=[1, 2, 3]), r"label_names must be a list of 3 names"),
    "architecture_config a list": (
        lambda c: c.update(architecture_config=[1]),
        r"architecture_config must be an object or null",
    ),
    "hash a number": (lambda c: c.update(model_sha256=5), r"model_sha256 must be a SHA-256 or null, not 5"),
    "hash of other weights": (lambda c: c.update(model_sha256="0" * 64), r"does not match the SHA-256"),
    "preprocessing a list": (
        lambda c: c.update(preprocessing=[]),
        r"preprocessing must be an object, not \[\]",
    ),
    "no input_size": (lambda c: c["preprocessing"].pop("input_size"), r"preprocessing\.input_size must be"),
    "input_size short": (
        lambda c: c["preprocessing"].update(input_size=[3, 32]),
        r"preprocessing\.input_size must be \[channels, height, width\], positive, not \[3, 32\]",
    ),
    "input_size text": (
        lambda c: c["preprocessing"].update(input_size="abc"),
        r"preprocessing\.input_size must be \[channels, height, width\]",
    ),
    "two channels": (
        lambda c: c["preprocessing"].update(input_size=[2, 32, 32]),
        r"preprocessing\.input_size must be for 1, 3 or 4 channels, not \[2, 32, 32\]",
    ),
    "a million channels": (
        lambda c: c["preprocessing"].update(input_size=[10**6, 32, 32]),
        r"for 1, 3 or 4 channels",
    ),
    "mean too short": (
        lambda c: c["preprocessing"].update(mean=[0.5]),
        r"preprocessing\.mean must be 3 numbers, one per channel, not \[0\.5\]",
    ),
    "std not numbers": (
        lambda c: c["preprocessing"].update(std=["a", "b", "c"]),
        r"preprocessing\.std must be 3",
    ),
    "std zero": (lambda c: c["preprocessing"].update(std=[0, 1, 1]), r"preprocessing\.std must be positive"),
    "std infinite": (lambda c: c["preprocessing"].update(std=[1e999, 1, 1]), r"preprocessing\.std must be 3"),
    "interpolation a number": (
        lambda c: c["preprocessing"].update(interpolation=2),
        r"preprocessing\.interpolation must be one of nearest, bilinear, bicubic, .*, not 2",
    ),
    "interpolation unknown": (
        lambda c: c["preprocessing"].update(interpolation="cubic"),
        r"preprocessing\.interpolation must be one of .*, not 'cubic'",
    ),
    "crop_pct negative": (
        lambda c: c["preprocessing"].update(crop_pct=-1),
        r"preprocessing\.crop_pct must be a positive number, not -1",
    ),
    "crop_pct text": (
        lambda c: c["preprocessing"].update(crop_pct="0.9"),
        r"preprocessing\.crop_pct must be",
    ),
}
# Keys only `transferkit.load` reads: the run: loader builds a network, it does not predict.
PREDICT_KEY_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "no label_names": (lambda c: c.pop("label_names"), r"lacks \['label_names'\]"),
    "views a text": (
        lambda c: c.update(test_time_views="hflip"),
        r"unknown test-time views 'hflip'; valid: a list",
    ),
    "views unhashable": (lambda c: c.update(test_time_views=[["hflip"]]), r"unknown test-time views"),
    "views unknown": (lambda c: c.update(test_time_views=["spin"]), r"unknown test-time views \['spin'\]"),
    "temperature text": (lambda c: c.update(temperature="hot"), r"temperature must be a positive number"),
    "data_channels two": (
        lambda c: c.update(data_channels=2),
        r"data_channels must be 1, 3, 4 or null, not 2",
    ),
    "data_channels true": (lambda c: c.update(data_channels=True), r"data_channels must be 1, 3, 4 or null"),
}


def _loaders() -> list[Any]:
    return [
        pytest.param(lambda b: transferkit.load(b, device="cpu"), id="load"),
        pytest.param(lambda b: resolve_model(f"run:{b}"), id="run"),
    ]


@pytest.mark.parametrize("load", _loaders())
@pytest.mark.parametrize("case", CONFIG_DAMAGE.values(), ids=CONFIG_DAMAGE.keys())
def test_a_broken_config_file_is_a_model_error(
    bundle: Path, tmp_path: Path, case: tuple[Callable[[Path], object], str], load: Callable[[Path], object]
) -> None:
    damage, message = case
    copy = _copy(bundle, tmp_path / "bundle")
    damage(copy)
    with pytest.raises(ModelError, match=message):
        load(copy)


@pytest.mark.parametrize("load", _loaders())
@pytest.mark.parametrize("case", KEY_DAMAGE.values(), ids=KEY_DAMAGE.keys())
def test_a_config_key_missing_or_of_the_wrong_type_is_named(
    bundle: Path,
    tmp_path: Path,
    case: tuple[Callable[[dict[str, Any]], object], str],
    load: Callable[[Path], object],
) -> None:
    change, message = case
    copy = _copy(bundle, tmp_path / "bundle")
    _rewrite_config(copy, change)
    with pytest.raises(TransferkitError, match=message):
        load(copy)


@pytest.mark.parametrize("case", PREDICT_KEY_DAMAGE.values(), ids=PREDICT_KEY_DAMAGE.keys())
def test_a_prediction_setting_missing_or_of_the_wrong_type_is_named(
    bundle: Path, tmp_path: Path, case: tuple[Callable[[dict[str, Any]], object], str]
) -> None:
    change, message = case
    copy = _copy(bundle, tmp_path / "bundle")
    _rewrite_config(copy, change)
    with pytest.raises(ModelError, match=message):
        transferkit.load(copy, device="cpu")


@pytest.mark.parametrize("content", [b"[" * 100_000, b"\xff\xfe{}"], ids=["nested deep", "not UTF-8"])
def test_a_bundle_given_as_a_bare_folder_reports_a_broken_config(
    bundle: Path, tmp_path: Path, content: bytes
) -> None:
    copy = _copy(bundle, tmp_path / "bundle")
    (copy / "config.json").write_bytes(content)
    with pytest.raises(ModelError, match=r"Cannot read .*config\.json"):
        resolve_model(str(copy))  # the folder's kind is told from its config.json first


def test_weights_of_another_model_are_refused_by_the_hash(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path / "bundle")
    (copy / "model.safetensors").write_bytes(WEIGHTS[".safetensors"])  # same architecture, other values
    with pytest.raises(
        ModelError, match=r"model\.safetensors does not match the SHA-256 in its config\.json"
    ):
        transferkit.load(copy, device="cpu")


def test_the_undamaged_bundle_loads(bundle: Path) -> None:
    # The control for every case above: the same copy and loaders succeed on the intact files.
    assert transferkit.load(bundle, device="cpu").label_names == ["cat", "dog", "fox"]
    assert resolve_model(f"run:{bundle}").architecture == ARCH
