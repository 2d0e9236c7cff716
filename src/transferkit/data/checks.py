"""Data checks: unreadable files, duplicates and leakage between splits, class balance, sizes and modes.

`check_data` decodes every image once, exactly as training does, and returns a plain `DataReport` that
the CLI prints, `fit` uses to leave out unreadable images, and the run report shows.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, JpegImagePlugin, UnidentifiedImageError

from transferkit.data.decode import decode_image, to_channels
from transferkit.data.source import ImageRecord, ImageSource
from transferkit.data.splits import Splits, class_counts
from transferkit.data.threads import map_in_threads
from transferkit.errors import DataError
from transferkit.files import cache_root, common_folder, sha256_of_file, write_atomic
from transferkit.progress import progress_task

NEAR_HASH_DISTANCE = 4  # differing bits of the 64-bit difference hash that still count as near
# dHash alone pairs up distinct but alike images (3,008 pairs within 4 bits among ELPV's 2,624 cells,
# mostly plainly different cells), so a candidate pair must also match in a 32 x 32 grayscale thumbnail,
# compared after removing brightness and contrast. Re-encoded or slightly brightened copies of photos
# correlate above 0.999; ELPV's most alike distinct cells (sister wafers) reach 0.998.
NEAR_CORRELATION = 0.999
THUMBNAIL_SIZE = 32
IMBALANCE_WARNING = 10.0  # largest / smallest train class
TINY_CLASS = 5  # train images below which a class's metrics are noise
TINY_CLASSES_SHOWN = 8  # the smallest classes a warning names
# A file property (size, colour mode) that names the class of this share of each class's train images
# (on average over classes), by the majority of the other images that share it, is a shortcut a model
# can learn instead of the content: the classes were collected differently.
SHORTCUT_AGREEMENT = 0.9
_BLOCK = 1024  # rows of the pairwise hash distance computed at once (1024 x N float32)
_GATHER_LIMIT = 8192  # candidate pairs of a block compared one by one; more take one matrix product
_LOADER_ERRORS = (DataError, OSError, ValueError, SyntaxError)
_CHECK_FORMAT = 2  # bump when a scan's facts change, so that saved checks are not reused


@dataclass(frozen=True)
class BadImage:
    """A record that cannot be decoded; `reason` is short, e.g. "zero bytes" or "truncated"."""

    index: int
    path: str
    reason: str
    split: str = ""


@dataclass(frozen=True)
class DuplicateGroup:
    """Records that hold the same image ("exact": same bytes or pixels) or nearly so ("near").

    Attributes:
        splits: the splits the members are in, in train/val/test order.
        labels: each member's class name, in member order.
    """

    kind: str
    indices: list[int]
    paths: list[str]
    splits: list[str]
    labels: list[str]

    @property
    def leakage(self) -> bool:
        """Test images with a copy in train or val: the test score is inflated."""
        return "test" in self.splits and bool({"train", "val"} & set(self.splits))

    @property
    def mixed_labels(self) -> bool:
        return len(set(self.labels) - {"(unlabeled)"}) > 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "leakage": self.leakage}


@dataclass(frozen=True)
class Spread:
    """Smallest, median and largest value."""

    min: float
    median: float
    max: float


@dataclass
class DataReport:
    """What `check_data` found.

    Attributes:
        root: common folder of the image files ("" when records are not files), for shorter display.
        counts: split -> class name -> readable images.
        widths, heights: of the decoded (EXIF-rotated) images; None when nothing could be read.
        modes: PIL mode as stored in the file ("L", "RGB", "P", "I;16", "CMYK", ...) -> images.
        imbalance: largest / smallest train class among classes with train images.
        errors: problems that make results wrong (unreadable files, leakage, classes without train images).
        warnings: problems worth a look (duplicates inside a split, imbalance, tiny classes).
        elongation: long side over short side of the readable train and validation images (what
            ``preprocess.crop: auto`` goes by; test images take no part in a choice).
    """

    num_images: int
    root: str
    class_names: list[str]
    counts: dict[str, dict[str, int]]
    widths: Spread | None
    heights: Spread | None
    modes: dict[str, int]
    bad_images: list[BadImage]
    duplicates: list[DuplicateGroup]
    imbalance: float | None
    classes_without_train: list[str]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elongation: Spread | None = None

    @property
    def bad_indices(self) -> set[int]:
        """Record indices to leave out of training and evaluation."""
        return {bad.index for bad in self.bad_images}

    @property
    def num_readable(self) -> int:
        return self.num_images - len(self.bad_images)

    def display_path(self, path: str) -> str:
        """`path` relative to the images' common folder."""
        return os.path.relpath(path, self.root) if self.root and os.path.isabs(path) else path

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "duplicates": [group.to_dict() for group in self.duplicates],
            "num_readable": self.num_readable,
        }


@dataclass
class _Scan:
    """One record's facts, gathered in a single decode."""

    problem: str | None
    digest: str = ""
    mode: str = ""
    size: tuple[int, int] = (0, 0)
    difference_hash: int = 0
    thumbnail: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))


def check_data(source: ImageSource, splits: Splits, cache: CheckCache | None = None) -> DataReport:
    """Decodes every record of `source` once and reports what would hurt training or evaluation.

    Pure apart from a progress bar and the `cache`: nothing is printed, and the report can be shown or
    saved as is. With a `cache`, files checked before (the same contents, all of them) are not decoded
    again: what their decoding found is read back.
    """
    scans = _scan_all(source, cache)
    split_of = {
        index: name
        for name, indices in [*splits.items(), ("unlabeled", splits.unlabeled)]
        for index in indices
    }
    bad = [
        BadImage(index, record.path, scan.problem, split_of.get(index, ""))
        for index, (record, scan) in enumerate(zip(source.records, scans, strict=True))
        if scan.problem is not None
    ]
    readable = [index for index, scan in enumerate(scans) if scan.problem is None]
    kept = Splits(*([i for i in indices if scans[i].problem is None] for _, indices in splits.items()))
    counts = class_counts(source, kept)
    sizes = [scans[i].size for i in readable]
    report = DataReport(
        num_images=len(source.records),
        root=common_folder([r.path for r in source.records if os.path.isabs(r.path)]),
        class_names=list(source.class_names),
        counts=counts,
        widths=_spread([width for width, _ in sizes]),
        heights=_spread([height for _, height in sizes]),
        modes=dict(Counter(scans[i].mode for i in readable).most_common()),
        bad_images=bad,
        duplicates=_duplicate_groups(source, split_of, scans, readable),
        imbalance=_imbalance(counts["train"]),
        classes_without_train=[name for name, count in counts["train"].items() if count == 0],
        elongation=_spread([_elongation(scans[i].size) for i in kept.train + kept.val]),
    )
    report.errors, report.warnings = _errors(report), _warnings(report)
    report.warnings += _shortcut_warnings(source, kept.train, scans)
    return report


def difference_hash(image: Image.Image) -> int:
    """64-bit dHash: a 9 x 8 grayscale thumbnail, one bit per pixel brighter than its right neighbour."""
    return _difference_hash(to_channels(image, 1))


def near_duplicate_pairs(hashes: np.ndarray, thumbnails: np.ndarray) -> np.ndarray:
    """Pairs (i < j) within `NEAR_HASH_DISTANCE` bits whose thumbnails correlate >= `NEAR_CORRELATION`.

    Args:
        hashes: (N,) uint64 difference hashes.
        thumbnails: (N, THUMBNAIL_SIZE**2) uint8 grayscale thumbnails.

    Returns:
        (P, 2) int64 indices.
    """
    bits = np.unpackbits(np.asarray(hashes, dtype=">u8").view(np.uint8).reshape(-1, 8), axis=1)
    bits = bits.astype(np.float32)
    standardized = _standardize(np.asarray(thumbnails))
    pairs = [np.empty((0, 2), dtype=np.int64)]
    for start in range(0, len(bits), _BLOCK):
        rows, cols = _hash_neighbours(bits, start)
        keep = _correlations(standardized, rows, cols) >= NEAR_CORRELATION
        pairs.append(np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64))
    return np.concatenate(pairs)


@dataclass(frozen=True)
class CheckCache:
    """What the check of a set of files found, as ``<key>.npz`` named by their contents: a rerun on the
    same files hashes them (a fraction of a second for thousands) instead of decoding each again."""

    root: Path

    @classmethod
    def default(cls) -> CheckCache:
        """``$TRANSFERKIT_CACHE/checks``, else ``~/.cache/transferkit/checks``."""
        return cls(cache_root() / "checks")

    def key(self, source: ImageSource) -> str | None:
        """A digest of every file's contents and the channels decoded to; None where a file cannot be
        read (the check says why)."""
        digest = hashlib.sha256(f"{_CHECK_FORMAT} {source.channels}\n".encode())
        for record in source.records:
            path = Path(record.path)
            try:
                content = sha256_of_file(path) if path.is_file() else f"absent:{record.path}"
            except OSError:
                return None
            digest.update(f"{content}\n".encode())
        return digest.hexdigest()

    def load(self, key: str, count: int) -> list[_Scan] | None:
        path = self.root / f"{key}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                facts = [saved[name] for name in ("problem", "digest", "mode", "size", "hash", "thumbnail")]
        except (OSError, ValueError, KeyError):  # unreadable: the caller checks again and replaces it
            return None
        if any(len(column) != count for column in facts):
            return None
        return [
            _Scan(None, str(digest), str(mode), (int(size[0]), int(size[1])), int(hash_), thumbnail)
            if not problem
            else _Scan(str(problem))
            for problem, digest, mode, size, hash_, thumbnail in zip(*facts, strict=True)
        ]

    def store(self, key: str, scans: list[_Scan]) -> None:
        blank = np.zeros(THUMBNAIL_SIZE**2, dtype=np.uint8)  # an unreadable file has no thumbnail
        buffer = io.BytesIO()
        np.savez(
            buffer,
            problem=np.array([scan.problem or "" for scan in scans]),
            digest=np.array([scan.digest for scan in scans]),
            mode=np.array([scan.mode for scan in scans]),
            size=np.array([scan.size for scan in scans], dtype=np.int64).reshape(-1, 2),
            hash=np.array([scan.difference_hash for scan in scans], dtype=np.uint64),
            thumbnail=np.stack([scan.thumbnail if scan.problem is None else blank for scan in scans]),
        )
        write_atomic(self.root / f"{key}.npz", buffer.getvalue())


def _scan_all(source: ImageSource, cache: CheckCache | None) -> list[_Scan]:
    # In-memory sets (digits) have no files to name them by: their pixels are their digest.
    key = cache.key(source) if cache is not None and source.loader is None else None
    saved = cache.load(key, len(source.records)) if cache is not None and key is not None else None
    if saved is not None:
        return saved
    scans = _scan_each(source)
    if cache is not None and key is not None and scans:
        cache.store(key, scans)
    return scans


def _scan_each(source: ImageSource) -> list[_Scan]:
    def scan(record: ImageRecord) -> _Scan:
        if source.loader is None:
            return _scan_file(record.path, source.channels)
        return _scan_loaded(source, record)

    scans = []
    with progress_task("checking images", len(source.records)) as advance:
        for found in map_in_threads(scan, source.records):
            scans.append(found)
            advance(1)
    return scans


def _scan_file(path: str, channels: int) -> _Scan:
    problem = _file_problem(Path(path))
    if problem is not None:
        return _Scan(problem)
    try:  # a thumbnail is all the comparisons need: a JPEG decodes at a reduced scale
        image = decode_image(path, channels, resized_to=THUMBNAIL_SIZE)
    except DataError as err:
        return _Scan(_reason(err))
    mode, size = _stored_mode_and_size(path, image)
    return _describe(image, mode, sha256_of_file(path), size)


def _stored_mode_and_size(path: str, decoded: Image.Image) -> tuple[str, tuple[int, int]]:
    """The file's own mode (decoding converted it) and size once EXIF-oriented: a JPEG may have been
    decoded at a reduced scale; other files were decoded whole (their EXIF would need a second decode)."""
    with Image.open(path) as header:
        if not isinstance(header, JpegImagePlugin.JpegImageFile):
            return header.mode, decoded.size
        width, height = header.size  # a JPEG's EXIF is in its header
        turned = header.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
        return header.mode, (height, width) if turned else (width, height)


def _scan_loaded(source: ImageSource, record: ImageRecord) -> _Scan:
    # No file to hash (in-memory sets such as digits): identical pixels are the exact duplicates.
    try:
        image = source.open(record)
        image.load()
    except _LOADER_ERRORS as err:
        return _Scan(_reason(err))
    header = f"{image.mode} {image.size}\n".encode()
    return _describe(image, image.mode, hashlib.sha256(header + image.tobytes()).hexdigest())


def _file_problem(path: Path) -> str | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if not path.is_file():
        return "not a file"
    return "zero bytes" if size == 0 else None


def _reason(err: BaseException) -> str:
    cause = err.__cause__ or err  # decode_image wraps PIL's exception
    if isinstance(cause, UnidentifiedImageError):
        return "not an image"
    if isinstance(cause, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return "too many pixels (decompression bomb)"
    text = str(cause)
    if "truncated" in text.lower():
        return "truncated"
    return f"undecodable ({text[:120]})"


def _describe(image: Image.Image, mode: str, digest: str, size: tuple[int, int] | None = None) -> _Scan:
    gray = to_channels(image, 1)
    thumbnail = gray.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX)
    size = size or image.size
    return _Scan(None, digest, mode, size, _difference_hash(gray), np.asarray(thumbnail).ravel())


def _difference_hash(gray: Image.Image) -> int:
    pixels = np.asarray(gray.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = pixels[:, :-1] > pixels[:, 1:]
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def _hash_neighbours(bits: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    # Hamming distance as |a| + |b| - 2 a.b on 0/1 rows: one matrix product for a block of rows.
    block = bits[start : start + _BLOCK]
    distance = block.sum(axis=1)[:, None] + bits.sum(axis=1)[None, :] - 2 * (block @ bits.T)
    rows, cols = np.nonzero(distance <= NEAR_HASH_DISTANCE)
    rows = rows + start
    return rows[rows < cols], cols[rows < cols]


def _correlations(standardized: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if len(rows) <= _GATHER_LIMIT:
        return np.einsum("ij,ij->i", standardized[rows], standardized[cols])
    # Many alike images (blank ones share one hash): one matrix product beats gathering rows one by one.
    first = int(rows.min())
    products = standardized[first : int(rows.max()) + 1] @ standardized.T
    return products[rows - first, cols]


def _standardize(thumbnails: np.ndarray) -> np.ndarray:
    # Zero mean, unit norm: dot products are Pearson correlations, blind to brightness and contrast.
    # Flat images get zeros and so correlate with nothing.
    centred = thumbnails.astype(np.float32) - thumbnails.mean(axis=1, keepdims=True, dtype=np.float32)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 1e-3)


def _duplicate_groups(
    source: ImageSource, split_of: dict[int, str], scans: list[_Scan], readable: list[int]
) -> list[DuplicateGroup]:
    by_digest: dict[str, list[int]] = {}
    for index in readable:
        by_digest.setdefault(scans[index].digest, []).append(index)
    exact = [members for members in by_digest.values() if len(members) > 1]
    near = [
        members
        for members in _near_components(scans, readable)
        if len({scans[i].digest for i in members}) > 1  # not just one set of identical copies
    ]
    return [_group("exact", m, source, split_of) for m in exact] + [
        _group("near", m, source, split_of) for m in near
    ]


def _near_components(scans: list[_Scan], readable: list[int]) -> list[list[int]]:
    if len(readable) < 2:
        return []
    hashes = np.array([scans[i].difference_hash for i in readable], dtype=np.uint64)
    thumbnails = np.stack([scans[i].thumbnail for i in readable])
    pairs = near_duplicate_pairs(hashes, thumbnails)
    from scipy.sparse import coo_matrix  # half a second to import: only where duplicates are grouped
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(readable),) * 2)
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for position, label in enumerate(component.tolist()):
        members.setdefault(label, []).append(readable[position])
    return [group for group in members.values() if len(group) > 1]


def _group(kind: str, members: list[int], source: ImageSource, split_of: dict[int, str]) -> DuplicateGroup:
    touched = {split_of.get(i, "") for i in members}
    return DuplicateGroup(
        kind=kind,
        indices=members,
        paths=[source.records[i].path for i in members],
        splits=[name for name in ("train", "val", "test", "unlabeled", "") if name in touched],
        labels=[_label_name(source, source.records[i].label) for i in members],
    )


def _label_name(source: ImageSource, label: int) -> str:
    return source.class_names[label] if label >= 0 else "(unlabeled)"


def _elongation(size: tuple[int, int]) -> float:
    """Long side over short side: 1 for a square, 4 for a strip four times as long as it is wide."""
    return max(size) / min(size)


def _spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    return Spread(float(min(values)), float(np.median(values)), float(max(values)))


def _imbalance(train_counts: dict[str, int]) -> float | None:
    present = [count for count in train_counts.values() if count > 0]
    return max(present) / min(present) if present else None


def _errors(report: DataReport) -> list[str]:
    errors = []
    if report.bad_images:
        reasons = Counter(bad.reason.split(" (")[0] for bad in report.bad_images)
        listing = ", ".join(f"{reason}: {count}" for reason, count in reasons.most_common())
        errors.append(
            f"{len(report.bad_images)} image(s) cannot be read ({listing}); fix or delete them. "
            "Training leaves them out (data.bad_images=skip) or stops (data.bad_images=error)."
        )
    leaks = [group for group in report.duplicates if group.leakage]
    if leaks:
        errors.append(
            f"{len(leaks)} duplicate group(s) put copies of test images in train or val "
            f"({_kinds(leaks)}), e.g. {_example(report, leaks[0])}: the test score is inflated. "
            "Remove the copies, or keep each group within one split."
        )
    if report.classes_without_train:
        errors.append(
            f"Classes {report.classes_without_train} have no readable train image; "
            "add train images or remove the classes."
        )
    return errors


def _warnings(report: DataReport) -> list[str]:
    warnings = _duplicate_warnings(report)
    if report.imbalance is not None and report.imbalance > IMBALANCE_WARNING:
        train = report.counts["train"]
        largest = max(train, key=lambda name: train[name])
        smallest = min((name for name in train if train[name]), key=lambda name: train[name])
        warnings.append(
            f"Train classes are imbalanced {report.imbalance:.1f}x ({largest}: {train[largest]}, "
            f"{smallest}: {train[smallest]}); judge by balanced accuracy and macro-F1, not accuracy."
        )
    train = report.counts["train"]
    tiny = sorted((name for name, count in train.items() if 0 < count < TINY_CLASS), key=train.__getitem__)
    if tiny:
        listing = ", ".join(f"{name} ({train[name]})" for name in tiny[:TINY_CLASSES_SHOWN])
        more = f" and {len(tiny) - TINY_CLASSES_SHOWN} more" if len(tiny) > TINY_CLASSES_SHOWN else ""
        warnings.append(
            f"{len(tiny)} class(es) with fewer than {TINY_CLASS} train images: {listing}{more}; add images, "
            "their metrics are mostly noise."
        )
    return warnings


def _shortcut_warnings(source: ImageSource, train: list[int], scans: list[_Scan]) -> list[str]:
    """Where the image size or colour mode alone tells the train classes apart (images without one of
    the classes, such as those an active-learning pool adds, take no part)."""
    names = source.class_names
    labelled = [i for i in train if 0 <= source.records[i].label < len(names)]
    labels = [names[source.records[i].label] for i in labelled]
    if len(set(labels)) < 2:
        return []  # nothing to tell apart
    properties = {
        "image size": ["{} x {}".format(*scans[i].size) for i in labelled],
        "colour mode": [scans[i].mode for i in labelled],
    }
    warnings = []
    for name, values in properties.items():
        agreement = _balanced_agreement(values, labels)
        if agreement < SHORTCUT_AGREEMENT:
            continue
        by_class: dict[str, Counter[str]] = {}
        for value, label in zip(values, labels, strict=True):
            by_class.setdefault(label, Counter())[value] += 1
        listing = "; ".join(
            f"{label}: {counts.most_common(1)[0][0]} ({counts.most_common(1)[0][1]} of {counts.total()})"
            for label, counts in list(by_class.items())[:TINY_CLASSES_SHOWN]
        )
        warnings.append(
            f"The {name} alone tells the train classes apart ({listing}): naming each train image's class "
            f"by the other images of its {name} gets {agreement:.0%} right (balanced over classes). A model "
            "can learn it instead of the content, and a test split collected alike will not show it. Check "
            f"how each class was collected; if it is an artefact, bring the images to one {name}."
        )
    return warnings


def _balanced_agreement(values: list[str], labels: list[str]) -> float:
    """The mean over classes of the share of a class's images that the majority label of the other images
    with their value names (an image alone with its value, or in a tie, is not named)."""
    groups: dict[str, Counter[str]] = {}
    for value, label in zip(values, labels, strict=True):
        groups.setdefault(value, Counter())[label] += 1
    named: Counter[str] = Counter()
    for counts in groups.values():
        for label, count in counts.items():
            rival = max((other for name, other in counts.items() if name != label), default=0)
            named[label] += count if count - 1 > rival else 0
    sizes = Counter(labels)
    return sum(named[label] / size for label, size in sizes.items()) / len(sizes) if sizes else 0.0


def _duplicate_warnings(report: DataReport) -> list[str]:
    warnings = []
    inside = [g for g in report.duplicates if len(g.splits) == 1]
    if inside:
        warnings.append(
            f"{len(inside)} duplicate group(s) within one split ({_kinds(inside)}), e.g. "
            f"{_example(report, inside[0])}: those images count more than once; remove unintended copies."
        )
    train_val = [g for g in report.duplicates if len(g.splits) > 1 and not g.leakage]
    if train_val:
        warnings.append(
            f"{len(train_val)} duplicate group(s) span train and val ({_kinds(train_val)}), e.g. "
            f"{_example(report, train_val[0])}: validation scores (early stopping) are inflated."
        )
    mixed = [g for g in report.duplicates if g.mixed_labels]
    if mixed:
        example = ", ".join(
            f"{report.display_path(p)}: {label}"
            for p, label in zip(mixed[0].paths, mixed[0].labels, strict=True)
        )
        warnings.append(
            f"{len(mixed)} duplicate group(s) carry different labels, e.g. {example}; check them."
        )
    return warnings


def _kinds(groups: list[DuplicateGroup]) -> str:
    kinds = Counter(group.kind for group in groups)
    return ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))


def _example(report: DataReport, group: DuplicateGroup) -> str:
    shown = (" = " if group.kind == "exact" else " ~ ").join(report.display_path(p) for p in group.paths[:3])
    return shown + (f" (+{len(group.paths) - 3} more)" if len(group.paths) > 3 else "")
