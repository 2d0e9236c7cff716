"""Self-training from a fine-tuned teacher (after Xie et al., "Self-training with Noisy Student",
CVPR 2020): the run's own recipe is first trained on the labeled images alone; its confident,
class-balanced predictions on the pool become pseudo-labels, and the student, started afresh from the
same pretrained model, trains on labeled and pseudo-labeled images with the run's augmentation.

Where frozen features separate the classes poorly, a fine-tuned teacher's pseudo-labels are far more
often right than a head's on those features (`pseudo-label`); the price is a second training.

The teacher is the run without the pool, so the run can tell whether the pool helped: the teacher keeps
its view logits of the validation images (``teacher_logits.npy``; a cross-validation fold's are the
images it holds out), and where the student does no better than its teacher there (out of fold, or on
validation), the final model is the teacher's recipe (`gated`, ``train.semi.gate``; `PoolCheck`). Where
a cross-validated run keeps its pool, the final model's pseudo-labels come from the fold teachers' averaged
predictions (``teacher_pool.npy`` in each fold), each teacher measured on the images its fold held out,
where a teacher refit on every label would be measured on none (on ELPV binary, 10 labels per class, one
such refit labelled 38 % of its pool right while the fold teachers labelled 57 to 80 % right).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.data.splits import UNLABELED
from transferkit.files import write_atomic, write_json
from transferkit.models.backbone import Backbone
from transferkit.training.method_options import SelfTrainingOptions
from transferkit.training.semi.base import SemiMethod, Splits, Teacher, semi_methods
from transferkit.training.semi.pseudo_label import PseudoLabels, known_accuracy, select, with_pseudo_labels

# the teacher's arrays (`TeacherLabels`), each in a file of its own beside pseudo_labels.json
TEACHER_FILES = {"val_logits": "teacher_logits.npy", "pool_probabilities": "teacher_pool.npy"}


@semi_methods.register("self-training")
class SelfTraining(SemiMethod):
    """Pseudo-labels from the run's recipe trained on the labeled images alone; the student starts
    again from the pretrained model."""

    Options = SelfTrainingOptions
    name = "self-training"
    needs_pool = True
    needs_teacher = True

    def pseudo_label(
        self,
        backbone: Backbone,
        normalize: nn.Module,
        data: Splits,
        run_dir: Path,
        *,
        save: bool,
        teacher: Callable[[], Teacher] | None = None,
    ) -> tuple[Splits, TeacherLabels]:
        saved = run_dir / "pseudo_labels.json"
        arrays = {name: run_dir / file for name, file in TEACHER_FILES.items()}
        if saved.exists():  # a resumed run trains on the very same images
            labels = TeacherLabels.from_dict(json.loads(saved.read_text()))
            for name, path in arrays.items():
                setattr(labels, name, np.load(path) if path.exists() else None)
        elif teacher is None:
            raise ValueError("self-training needs the teacher's predictions (SemiMethod.needs_teacher)")
        else:
            labels = teacher_labels(teacher(), data, self.options.threshold)
            if save:  # the arrays first: the selection's file says the teacher's work is all saved
                for name, path in arrays.items():
                    if (array := getattr(labels, name)) is not None:
                        write_atomic(path, npy_bytes(array))
                write_json(saved, labels.to_dict())
        return with_pseudo_labels(data, labels), labels

    def note(self, history: list[dict[str, Any]], summary: Any) -> str | None:
        if summary is None:
            return None
        right = (
            "" if summary.accuracy is None else f" ({summary.accuracy:.1%} right where the label is known)"
        )
        teacher = (
            ""
            if summary.teacher_val_accuracy is None
            else f"; the teacher's validation accuracy was {summary.teacher_val_accuracy:.1%}"
        )
        teachers = (
            "a teacher trained on the labeled images alone"
            if summary.teachers == 1
            else f"the {summary.teachers} cross-validation folds' teachers, averaged,"
        )
        return (
            f"Self-training: {teachers} gave {len(summary.positions)} pool images a pseudo-label at "
            f"confidence {summary.threshold:.2f} or more{right}{teacher}; this model started again from "
            "the pretrained weights with them."
        )

    def teacher_logits(self, summary: Any) -> np.ndarray | None:
        return summary.val_logits if isinstance(summary, TeacherLabels) else None

    def teacher_pool(self, summary: Any) -> np.ndarray | None:
        return summary.pool_probabilities if isinstance(summary, TeacherLabels) else None

    @property
    def gated(self) -> bool:
        return bool(self.options.gate)


@dataclass
class TeacherLabels(PseudoLabels):
    """The teacher's pseudo-labels, their accuracy where the pool's labels are known, the teacher's own
    validation accuracy, how many teachers' predictions were averaged, and the teacher's validation view
    logits and pool probabilities (`Teacher`, kept in files of their own)."""

    threshold: float = 0.0
    accuracy: float | None = None
    teacher_val_accuracy: float | None = None
    teachers: int = 1
    val_logits: np.ndarray | None = None
    pool_probabilities: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "threshold": self.threshold,
            "accuracy": self.accuracy,
            "teacher_val_accuracy": self.teacher_val_accuracy,
            "teachers": self.teachers,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TeacherLabels:
        return cls(
            list(values["positions"]),
            list(values["labels"]),
            threshold=values["threshold"],
            accuracy=values["accuracy"],
            teacher_val_accuracy=values["teacher_val_accuracy"],
            teachers=values.get("teachers", 1),
        )


def teacher_labels(teacher: Teacher, data: Splits, threshold: float) -> TeacherLabels:
    """Per class, the pool images the teacher predicts most confidently (at least `threshold`), at
    most the class's share of the pool by the labeled class frequencies: one class cannot swamp the
    others."""
    train, val, pool = data["train"], data["val"], data[UNLABELED]
    classes = teacher.pool.shape[1]
    prior = torch.bincount(train.labels, minlength=classes).float() / len(train.labels)
    quotas = (prior * len(pool.labels)).ceil().long().tolist()
    positions, labels = select(teacher.pool, quotas, threshold)
    return TeacherLabels(
        positions,
        labels,
        threshold=threshold,
        accuracy=known_accuracy(pool.labels[positions], torch.tensor(labels, dtype=torch.long)),
        teacher_val_accuracy=known_accuracy(val.labels, teacher.val.argmax(1)) if len(val.labels) else None,
        teachers=teacher.members,
        val_logits=teacher.val_logits,
        pool_probabilities=teacher.pool.numpy(),
    )


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
