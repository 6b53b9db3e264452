"""XLA:CPU kernels, compiler options and process settings (README.md here has the figures and limits).

Every layer has its reference twin's parameters, names and semantics (``nn.Conv``, ``nn.BatchNorm``,
``nn.max_pool``, ``nn.avg_pool``, ``nn.relu``); only the arithmetic's order differs. ``LAYERS`` maps a
model's injectable field names to them; ``jaxvision.backends.layers("cpu")`` returns it.
"""

from jaxvision.backends.cpu.batch_norm import BatchNorm
from jaxvision.backends.cpu.conv import Conv
from jaxvision.backends.cpu.materialization import materialize, relu
from jaxvision.backends.cpu.pool_first_rewrite import pool_first
from jaxvision.backends.cpu.pooling import avg_pool, max_pool

LAYERS = {"conv": Conv, "norm": BatchNorm, "max_pool": max_pool, "avg_pool": avg_pool, "act": relu}

__all__ = ["LAYERS", "BatchNorm", "Conv", "avg_pool", "materialize", "max_pool", "pool_first", "relu"]
