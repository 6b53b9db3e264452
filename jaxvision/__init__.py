"""jaxvision: functional deep learning for computer vision in JAX, Flax linen and optax.

``jaxvision.data`` (tensorflow-datasets input pipelines) imports TensorFlow, so it and the other
subpackages (``augment``, ``pretrained``, ``transfer``, ``finetune``, ``evaluation``, ``visualize``,
``export``, ``tasks``) are loaded on first use rather than here: ``jaxvision.pretrained.load_torchvision(...)`` works
after ``import jaxvision``.
"""

import importlib
from typing import Any

from jaxvision.batch import Batch
from jaxvision.checkpoint import restore_checkpoint, save_checkpoint
from jaxvision.fit import FitResult, TrainingDiverged, TrainingInterrupted, evaluate, fit
from jaxvision.losses import LOSSES, binary_cross_entropy, cross_entropy, get_loss, l1, l2
from jaxvision.models import get_model, list_models
from jaxvision.optimizers import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from jaxvision.run_record import Run, load_run
from jaxvision.train import (
    EvalStep,
    TrainState,
    TrainStep,
    create_train_state,
    eval_step,
    make_eval_step,
    make_train_step,
    predict,
    train_step,
)

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "Batch",
    "EvalStep",
    "FitResult",
    "Run",
    "TrainState",
    "TrainStep",
    "TrainingDiverged",
    "TrainingInterrupted",
    "augment",
    "evaluation",
    "export",
    "finetune",
    "binary_cross_entropy",
    "create_train_state",
    "cross_entropy",
    "data",
    "eval_step",
    "evaluate",
    "fit",
    "get_loss",
    "get_model",
    "l1",
    "l2",
    "list_models",
    "load_run",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "predict",
    "pretrained",
    "restore_checkpoint",
    "save_checkpoint",
    "tasks",
    "train_step",
    "transfer",
    "visualize",
]


_LAZY_MODULES = ("data", "augment", "pretrained", "transfer", "finetune", "evaluation", "visualize", "export", "tasks")


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"jaxvision.{name}")
    raise AttributeError(f"module 'jaxvision' has no attribute {name!r}")
