"""A disk that fills up mid-write: the previous checkpoint, metrics file or bundle stays whole.

The fault is real: RLIMIT_FSIZE makes the kernel refuse writes past a size with EFBIG, as a full disk
refuses them with ENOSPC, in the middle of the writer's own `write` call. The limit is set for this
process and lifted again in the same test.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import transferkit
from transferkit.export import BundleInfo, save_bundle
from transferkit.files import write_atomic, write_json
from transferkit.models import resolve_model
from transferkit.models.backbone import Backbone
from transferkit.training.callbacks import AtomicCheckpointIO


@contextmanager
def file_size_limit(max_bytes: int) -> Iterator[None]:
    """Writes that would make any file larger than `max_bytes` fail with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Without this the kernel's SIGXFSZ would end the process instead of failing the write.
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, hidden ones (temporary files) included, with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _backbone(seed: int) -> Backbone:
    torch.manual_seed(seed)
    backbone = resolve_model("timm:test_efficientnet", pretrained=False)
    backbone.reset_head(3)
    backbone.preprocessing = backbone.preprocessing.resized(32)
    return backbone


INFO = BundleInfo(["cat", "dog", "fox"], {"accuracy": 0.5}, "animals")


def test_the_limit_is_a_real_fault(tmp_path: Path) -> None:
    # The control, without transferkit: the kernel writes up to the limit, then refuses the rest.
    descriptor = os.open(tmp_path / "raw.bin", os.O_WRONLY | os.O_CREAT)
    try:
        with file_size_limit(1000):
            assert os.write(descriptor, b"x" * 5000) == 1000
            with pytest.raises(OSError) as raised:
                os.write(descriptor, b"x")
    finally:
        os.close(descriptor)
    assert raised.value.errno == errno.EFBIG


def test_a_checkpoint_that_does_not_fit_leaves_the_last_one(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.zeros(10)}, path)
    before = _files(tmp_path)
    with file_size_limit(path.stat().st_size + 100), pytest.raises(OSError) as raised:
        io.save_checkpoint({"step": 2, "weights": torch.ones(100_000)}, path)
    assert raised.value.errno == errno.EFBIG
    assert f"Cannot write {path}" in str(raised.value) and "left as it was" in str(raised.value)
    assert _files(tmp_path) == before  # the old checkpoint, and no temporary file beside it
    assert io.load_checkpoint(path, weights_only=True)["step"] == 1


def test_metrics_that_do_not_fit_leave_the_previous_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "metrics.json", {"accuracy": 0.9})
    before = _files(tmp_path)
    metrics = {f"class_{i}": {"precision": 0.5, "recall": 0.5} for i in range(200)}
    with file_size_limit(512), pytest.raises(OSError, match=r"Cannot write .*metrics\.json: File too large"):
        write_json(path, metrics)
    assert _files(tmp_path) == before
    assert json.loads(path.read_text()) == {"accuracy": 0.9}


def test_a_bundle_that_does_not_fit_leaves_the_previous_bundle_complete(tmp_path: Path) -> None:
    bundle = save_bundle(_backbone(0), INFO, tmp_path / "run" / "model")
    before = _files(tmp_path)
    weights_size = (bundle / "model.safetensors").stat().st_size
    with file_size_limit(weights_size // 2), pytest.raises(OSError) as raised:
        save_bundle(_backbone(1), INFO, bundle)
    assert raised.value.errno == errno.EFBIG
    assert f"Cannot write {bundle}" in str(raised.value) and "its files are left as they were" in str(
        raised.value
    )
    assert _files(tmp_path) == before  # same three files, same bytes; no staging folder left
    assert transferkit.load(bundle, device="cpu").label_names == INFO.class_names  # and it still loads


def test_a_new_bundle_that_does_not_fit_leaves_no_folder(tmp_path: Path) -> None:
    with file_size_limit(10_000), pytest.raises(OSError):
        save_bundle(_backbone(0), INFO, tmp_path / "run" / "model")
    assert _files(tmp_path) == {}
    assert not (tmp_path / "run" / "model").exists()  # never a bundle folder without its config


def test_a_disk_full_on_the_config_after_the_weights_leaves_the_previous_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file-size limit always trips on the weights, the largest file; here the second file fails.
    bundle = save_bundle(_backbone(0), INFO, tmp_path / "model")
    before = _files(tmp_path)
    calls = []
    real_fsync = os.fsync

    def fsync_until_full(descriptor: int) -> None:
        calls.append(descriptor)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    with pytest.raises(OSError, match=r"Cannot write .*model: No space left on device"):
        save_bundle(_backbone(1), INFO, bundle)
    monkeypatch.undo()
    assert len(calls) == 2
    assert _files(tmp_path) == before


def test_saving_over_a_bundle_replaces_its_files_and_keeps_others(tmp_path: Path) -> None:
    bundle = save_bundle(_backbone(0), INFO, tmp_path / "model")
    (bundle / "notes.txt").write_bytes(b"a user's")  # a file save_bundle does not write
    (bundle / "model.onnx").write_bytes(b"exported")  # a graph of the old weights
    save_bundle(_backbone(1), INFO, bundle)
    assert sorted(p.name for p in bundle.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "notes.txt",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # the staging folder is gone
    assert oct(bundle.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # not mkdtemp's private 0700
    assert transferkit.load(bundle, device="cpu").network is not None


def test_a_write_error_names_the_file_and_keeps_its_errno(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "report.md", b"old")
    with file_size_limit(10), pytest.raises(OSError) as raised:
        write_atomic(path, b"new and longer than ten bytes")
    assert raised.value.errno == errno.EFBIG
    expected = f"Cannot write {path}: File too large; any earlier version of it is left as it was"
    assert str(raised.value) == f"[Errno {errno.EFBIG}] {expected}"
    assert path.read_bytes() == b"old"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
