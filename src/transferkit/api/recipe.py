"""What one model's training needs, shared by the final model and every cross-validation fold."""

from __future__ import annotations

import copy
import functools
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from transferkit.config import FitConfig
from transferkit.data import ImageSource
from transferkit.data.cache import SplitImages
from transferkit.data.other_labels import AuxiliaryLabels, auxiliary_labels
from transferkit.data.splits import UNLABELED
from transferkit.errors import ConfigError
from transferkit.evaluation.calibration import CalibrationSet
from transferkit.export.predictor import Classifier
from transferkit.export.shared_prefix import view_logits_of_states
from transferkit.faults import kill_point
from transferkit.models import Backbone, resolve_model
from transferkit.run_dir import RunPaths
from transferkit.training.auxiliary import AuxiliaryHead
from transferkit.training.balance import class_weights, resolve_balance
from transferkit.training.interpolation import ALPHAS, WeightChoice, choose_alpha, interpolate
from transferkit.training.loop import TrainingPlan, TrainingResult, run_phases
from transferkit.training.methods import Methods
from transferkit.training.module import TransferModule
from transferkit.training.semi import SemiMethod, Teacher
from transferkit.training.strategies import FinetuneStrategy, create_strategy
from transferkit.transforms.augment import AugmentPreset
from transferkit.transforms.views import identity

logger = logging.getLogger(__name__)


def build_backbone(config: FitConfig, source: ImageSource, strategy: FinetuneStrategy) -> Backbone:
    """The pretrained model with a new head for the source's classes, adapted by the strategy, at the
    configured input size."""
    model = config.model
    backbone = resolve_model(model.name, model.pretrained, model.arch, model.weights)
    backbone.reset_head(len(source.class_names), ordinal=config.train.task == "ordinal")
    backbone.adapt_input_channels(source.channels)
    strategy.adapt(backbone)
    prep = config.preprocess
    backbone.preprocessing = backbone.preprocessing.with_crop(prep.crop, crop_pct=prep.crop_pct)
    if prep.image_size:
        backbone.preprocessing = backbone.preprocessing.resized(prep.image_size)
    return backbone


def with_auxiliary(
    config: FitConfig, source: ImageSource, methods: Methods
) -> tuple[ImageSource, AuxiliaryLabels | None]:
    """The other label ``data.aux_label`` names, checked against the source and the run's methods, and
    the source with a note on it for the report; the source alone without one."""
    name = config.data.aux_label
    if name is None:
        return source, None
    train = config.train
    if methods.semi.needs_pool or train.mixup > 0 or train.cutmix > 0:
        raise ConfigError(
            f"data.aux_label={name} needs every training image's own label: it does not combine with "
            "train.semi (pool images have none) or train.mixup / train.cutmix (mixed images have two)."
        )
    labels = auxiliary_labels(source, name)
    note = (
        f"An auxiliary head learned {name} ({', '.join(labels.class_names)}) beside the task, at loss "
        f"weight {train.aux_weight:g}."
    )
    return replace(source, notes=[*source.notes, note]), labels


@dataclass(frozen=True)
class Recipe:
    """The resolved config, its methods, the data source and the augmentation of a run, the other
    label an auxiliary head learns, if any, and the teachers a self-training model learns from where they
    trained before it (the cross-validation folds' `Teacher.averaged`; else it trains its own)."""

    config: FitConfig
    methods: Methods
    source: ImageSource
    augment: AugmentPreset
    auxiliary: AuxiliaryLabels | None = None
    teachers: Teacher | None = None

    def backbone(self) -> Backbone:
        """A fresh pretrained model to train (one per cross-validation fold)."""
        return build_backbone(self.config, self.source, self.methods.strategy)

    def train(
        self,
        backbone: Backbone,
        data: dict[str, SplitImages],
        paths: RunPaths,
        *,
        resume: bool,
        writes: bool = True,
        keeps_best: bool = True,
    ) -> TrainingResult:
        """Trains `backbone` on ``data["train"]`` (validating on ``data["val"]``), writing into `paths`
        (best.ckpt unless not `keeps_best`); `finish` then puts it in its final, exportable form."""
        config, methods = self.config, self.methods
        train_counts = self.class_counts(data["train"].labels)
        balance = self.balance_mode(data["train"].labels)
        module = TransferModule(
            backbone,
            methods.strategy,
            config.train,
            config.seed,
            class_weights(train_counts) if balance == "weights" else None,
            augment=self.augment.train,
            semi=methods.semi,
            regularizer=methods.regularizer,
            auxiliary=self.auxiliary_head(backbone),
        )
        # called only when the method has no saved selection: a resumed student skips it
        teacher: Callable[[], Teacher] | None = None
        if methods.semi.needs_teacher and self.teachers is not None:
            teacher = functools.partial(given, self.teachers)
        elif methods.semi.needs_teacher:
            teacher = functools.partial(self.teach, backbone, data, paths, resume=resume, writes=writes)
        plan = TrainingPlan(
            data, paths, config.runtime, balance == "sampler", train_counts, writes, teacher, keeps_best
        )
        return run_phases(module, plan, resume=resume)

    def auxiliary_head(self, backbone: Backbone) -> AuxiliaryHead | None:
        """A new head for the other label, or None without one."""
        if self.auxiliary is None:
            return None
        return AuxiliaryHead(backbone.num_features, self.auxiliary, self.config.train.aux_weight)

    def head_only(self) -> Recipe:
        """This recipe with no fine-tuning epochs: the head fitted on frozen features is the model."""
        config = self.config.with_overrides({"train.epochs": 0})
        return replace(
            self, config=config, methods=replace(self.methods, strategy=create_strategy(config.train))
        )

    def without_pool(self) -> Recipe:
        """This recipe without its semi-supervised method: trained on the labeled images alone."""
        return replace(self, methods=replace(self.methods, semi=SemiMethod()))

    def teach(
        self,
        backbone: Backbone,
        data: dict[str, SplitImages],
        paths: RunPaths,
        *,
        resume: bool,
        writes: bool,
    ) -> Teacher:
        """What this recipe without its semi-supervised method, trained on the labeled images alone
        (``teacher/`` in the run directory, resumable), predicts for the pool and validation images.
        The teacher starts from a copy of the student's untrained `backbone`, so it is the very model a
        fit without the pool trains; the random state is restored afterwards: the student trains as it
        would without a teacher."""
        alone = self.without_pool()
        logger.info(
            "self-training: the teacher trains on the %d labeled images first", len(data["train"].labels)
        )
        with kept_random_state():
            network = copy.deepcopy(backbone)
            teacher_paths = paths.teacher()
            training = alone.train(
                network, data, teacher_paths, resume=resume, writes=writes, keeps_best=False
            )
            for checkpoint in (teacher_paths.last_checkpoint, teacher_paths.best_checkpoint):
                checkpoint.unlink(missing_ok=True)  # a resume reads the trained weights
            candidates = alone.validation_candidates(network, training, data["val"])
            choice, _ = alone.choose(candidates, data)
            alone.finish(network, training, choice.alpha if choice else 1.0)
            classifier = alone.classifier(network)
            pool, val = (
                torch.from_numpy(classifier.probabilities(data[n].images.numpy())) for n in (UNLABELED, "val")
            )
        kill_point("teacher")
        return Teacher(pool, val, np.stack(candidates) if candidates else None)

    def class_counts(self, labels: torch.Tensor) -> list[int]:
        return torch.bincount(labels, minlength=len(self.source.class_names)).tolist()

    def balance_mode(self, train_labels: torch.Tensor) -> str:
        """How training balances the classes: weights (loss), sampler (batches) or none."""
        return resolve_balance(self.config.train.balance, self.class_counts(train_labels))

    def balances(self, train_labels: torch.Tensor) -> bool:
        return self.balance_mode(train_labels) != "none"

    def choose_on_validation(
        self, backbone: Backbone, training: TrainingResult, data: dict[str, SplitImages]
    ) -> tuple[WeightChoice | None, CalibrationSet]:
        """The WiSE-FT candidate with the best validation predictions (every class weighed the same
        when training balances them; None without a validation split or without candidates), and its
        validation view logits, to calibrate on."""
        return self.choose(self.validation_candidates(backbone, training, data["val"]), data)

    def validation_candidates(
        self, backbone: Backbone, training: TrainingResult, val: SplitImages
    ) -> list[np.ndarray]:
        """`candidate_logits` of the validation images; none for an empty split."""
        return self.candidate_logits(backbone, training, val.images) if len(val.labels) else []

    def choose(
        self, candidates: list[np.ndarray], data: dict[str, SplitImages]
    ) -> tuple[WeightChoice | None, CalibrationSet]:
        """`chosen_candidate` among validation view logits (`validation_candidates`)."""
        empty = CalibrationSet.validation(None, data["val"].labels.numpy())
        if not candidates:
            return None, empty
        balanced = self.balances(data["train"].labels)
        return chosen_candidate(candidates, empty.labels, empty.name, balanced=balanced)

    def candidate_logits(
        self, backbone: Backbone, training: TrainingResult, images: torch.Tensor
    ) -> list[np.ndarray]:
        """View logits of `images` for each WiSE-FT candidate, in the order of `ALPHAS`; only the
        fine-tuned network's (α = 1) when the run keeps no start or WiSE-FT is off. The layers every
        candidate shares run once (`view_logits_of_states`); the network is left as it was trained."""
        classifier = self.classifier(backbone)
        if training.start is None or not self.config.train.wise_ft:
            return [classifier.view_logits(images.numpy())]
        tuned = backbone.model.state_dict()
        states = [interpolate(training.start, tuned, alpha) for alpha in ALPHAS]
        return view_logits_of_states(classifier, states, images.numpy(), self.config.runtime.inference)

    def finish(self, backbone: Backbone, training: TrainingResult, alpha: float = 1.0) -> None:
        """The network at `alpha` between its fitted head and its fine-tuned weights, in its plain,
        exportable form (adapters merged)."""
        if training.start is not None and alpha != 1.0:
            backbone.model.load_state_dict(interpolate(training.start, backbone.model.state_dict(), alpha))
        self.methods.strategy.finalize(backbone)

    def classifier(self, backbone: Backbone) -> Classifier:
        """The trained network as `load` will return it, with the run's test-time views (uncalibrated)."""
        views = self.augment.tta_views if self.config.preprocess.tta else (identity,)
        return Classifier.from_network(
            backbone.model,
            self.source.class_names,
            backbone.preprocessing,
            views=views,
            data_channels=self.source.channels,
            backend=self.config.runtime.inference,
        )


def chosen_candidate(
    candidates: list[np.ndarray], labels: np.ndarray, name: str, *, balanced: bool
) -> tuple[WeightChoice | None, CalibrationSet]:
    """The WiSE-FT candidate whose held-out view logits (in the order of `ALPHAS`) predict `labels`
    best, and its logits to calibrate on; None and the only logits where there is one candidate."""
    if len(candidates) != len(ALPHAS):
        return None, CalibrationSet(candidates[-1], labels, name)
    choice = choose_alpha(candidates, labels, name, balanced=balanced)
    return choice, CalibrationSet(candidates[ALPHAS.index(choice.alpha)], labels, name)


def given(teacher: Teacher) -> Teacher:
    """A teacher trained before, for the call a self-training run makes to get one."""
    return teacher


@contextmanager
def kept_random_state() -> Iterator[None]:
    """Python's, NumPy's and PyTorch's random states (every device's) as they were before the block."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        yield
    random.setstate(python)
    np.random.set_state(numpy)
