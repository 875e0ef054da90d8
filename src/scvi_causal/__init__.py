"""scvi-causal: causal representation learning for single-cell perturbation screens."""

from importlib.metadata import PackageNotFoundError, version

from . import core, data, images, metrics, model, module, pl, train

try:
    __version__ = version("scvi-causal")
except PackageNotFoundError:  # pragma: no cover - source checkout without install
    __version__ = "0.0.0"

__all__ = ["core", "data", "images", "metrics", "model", "module", "pl", "train", "__version__"]
