"""Transfer learning: features of a trained model, new heads, frozen layers and linear probes.

- ``feature_extractor``: the pooled pre-logit features and named maps of any zoo model.
- ``with_new_head``: the same backbone with another number of classes.
- ``frozen_modules``, ``with_frozen_layers``, ``finetune_optimizer``: ``--finetune linear | last:K |
  all``; frozen layers get zero updates and run in inference mode (Keras's semantics: a frozen batch
  norm uses and keeps its running statistics, a frozen dropout is off).
- ``cache_features``, ``train_linear_probe``, ``install_head``: a head trained on features computed once.
"""

from jaxvision.transfer.features import POOLED, available_layers, feature_extractor
from jaxvision.transfer.freezing import (
    FINETUNE_CHOICES,
    default_head,
    finetune_optimizer,
    frozen_modules,
    head_name,
    layer_order,
    parameter_labels,
    parse_finetune,
    units,
    with_frozen_layers,
)
from jaxvision.transfer.heads import with_new_head
from jaxvision.transfer.linear_probe import cache_features, install_head, train_linear_probe

__all__ = [
    "FINETUNE_CHOICES",
    "POOLED",
    "available_layers",
    "cache_features",
    "default_head",
    "feature_extractor",
    "finetune_optimizer",
    "frozen_modules",
    "head_name",
    "install_head",
    "layer_order",
    "parameter_labels",
    "parse_finetune",
    "train_linear_probe",
    "units",
    "with_frozen_layers",
    "with_new_head",
]
