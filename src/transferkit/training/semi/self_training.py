"""Self-training from a fine-tuned teacher (after Xie et al., "Self-training with Noisy Student",
CVPR 2020): the run's own recipe is first trained on the labeled images alone; its confident,
class-balanced predictions on the pool become pseudo-labels, and the student, started afresh from the
same pretrained model, trains on labeled and pseudo-labeled images with the run's augmentation.

Where frozen features separate the classes poorly, a fine-tuned teacher's pseudo-labels are far more
often right than a head's on those features (`pseudo-label`); the price is a second training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.data.splits import UNLABELED
from transferkit.files import write_json
from transferkit.models.backbone import Backbone
from transferkit.training.method_options import SelfTrainingOptions
from transferkit.training.semi.base import SemiMethod, Splits, Teacher, semi_methods
from transferkit.training.semi.pseudo_label import PseudoLabels, known_accuracy, select, with_pseudo_labels


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
        if saved.exists():  # a resumed run trains on the very same images
            labels = TeacherLabels.from_dict(json.loads(saved.read_text()))
        elif teacher is None:
            raise ValueError("self-training needs the teacher's predictions (SemiMethod.needs_teacher)")
        else:
            labels = teacher_labels(teacher(), data, self.options.threshold)
            if save:
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
        return (
            f"Self-training: a teacher trained on the labeled images alone gave {len(summary.positions)} "
            f"pool images a pseudo-label at confidence {summary.threshold:.2f} or more{right}{teacher}; "
            "this model started again from the pretrained weights with them."
        )

    def out_of_fold_note(self, summaries: list[Any], held_out: list[int], accuracy: float) -> str | None:
        """The fold teachers against the fold students on the labeled images each fold held out: the
        teacher is the recipe without the pool, so this says whether the pool helped. (Each teacher's
        WiSE-FT candidate is chosen on its fold's images, the students' on all of them: a close call
        leans toward the teacher.)"""
        teachers = [summary.teacher_val_accuracy for summary in summaries]
        if not teachers or any(value is None for value in teachers):
            return None
        right = sum(value * images for value, images in zip(teachers, held_out, strict=True))
        teacher = right / sum(held_out)
        if math.isclose(accuracy, teacher, abs_tol=1e-9):
            verdict = "the pool neither helped nor hurt"
        elif accuracy > teacher:
            verdict = "the pool helped"
        else:
            verdict = "the pool hurt: a fit without --semi does better here"
        return (
            f"Out of fold, the teachers (labeled images alone) classified {teacher:.1%} of the "
            f"{sum(held_out)} held-out labeled images right and the students {accuracy:.1%}: {verdict}."
        )


@dataclass
class TeacherLabels(PseudoLabels):
    """The teacher's pseudo-labels, their accuracy where the pool's labels are known, and the teacher's
    own validation accuracy."""

    threshold: float = 0.0
    accuracy: float | None = None
    teacher_val_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "threshold": self.threshold,
            "accuracy": self.accuracy,
            "teacher_val_accuracy": self.teacher_val_accuracy,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TeacherLabels:
        return cls(
            list(values["positions"]),
            list(values["labels"]),
            threshold=values["threshold"],
            accuracy=values["accuracy"],
            teacher_val_accuracy=values["teacher_val_accuracy"],
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
    )
