"""Images on top of ``scvi_causal.core``: a convolutional VAE, interventional and paired dSprites.

No scvi and no AnnData here: the image VAE uses the same causal priors, masks and sparsity
penalties as the single-cell model.
"""

from ._dsprites import (
    FACTOR_NAMES as FACTOR_NAMES,
)
from ._dsprites import (
    INTERVENTIONS as INTERVENTIONS,
)
from ._dsprites import (
    ImagePairs,
    InterventionalImages,
    dsprites_pairs,
    interventional_dsprites,
    load_dsprites,
)
from ._vae import ConvDecoder, ConvEncoder, ImageVAE, ImageVAEModule
from ._weak import AdaGVAE

# FACTOR_NAMES and INTERVENTIONS (constants) are importable but not in __all__: the API docs
# list functions and classes only
__all__ = [
    "AdaGVAE",
    "ConvDecoder",
    "ConvEncoder",
    "ImageVAE",
    "ImageVAEModule",
    "ImagePairs",
    "InterventionalImages",
    "dsprites_pairs",
    "interventional_dsprites",
    "load_dsprites",
]
