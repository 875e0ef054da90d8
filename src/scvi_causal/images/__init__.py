"""Images on top of ``scvi_causal.core``: a convolutional VAE, interventional and paired dSprites.

No scvi and no AnnData here: the image VAE uses the same causal priors, masks and sparsity
penalties as the single-cell model (and its latent causal graph); dSprites with causally
related factors test the graph. Beside it: Ada-GVAE on pairs, CCVAE with labels as
characteristics of latent subspaces (and interventions on them), a small image classifier, and
latent counterfactual explanations of a classifier's decisions.
"""

from ._ccvae import CCVAE, CCVAEModule, LabelConditionalPrior
from ._classifier import ConvClassifier, ImageClassifier
from ._counterfactual import CounterfactualExplanations, latent_counterfactuals
from ._dsprites import (
    CAUSAL_FACTORS as CAUSAL_FACTORS,
)
from ._dsprites import (
    FACTOR_NAMES as FACTOR_NAMES,
)
from ._dsprites import (
    INTERVENTIONS as INTERVENTIONS,
)
from ._dsprites import (
    CausalImages,
    ImagePairs,
    InterventionalImages,
    causal_dsprites,
    discretize_factors,
    dsprites_pairs,
    interventional_dsprites,
    load_dsprites,
)
from ._vae import ConvDecoder, ConvEncoder, ImageVAE, ImageVAEModule
from ._weak import AdaGVAE

# FACTOR_NAMES, INTERVENTIONS and CAUSAL_FACTORS (constants) are importable but not in __all__:
# the API docs list functions and classes only
__all__ = [
    "AdaGVAE",
    "CCVAE",
    "CCVAEModule",
    "ConvClassifier",
    "CounterfactualExplanations",
    "ImageClassifier",
    "latent_counterfactuals",
    "LabelConditionalPrior",
    "discretize_factors",
    "ConvDecoder",
    "ConvEncoder",
    "ImageVAE",
    "ImageVAEModule",
    "ImagePairs",
    "InterventionalImages",
    "CausalImages",
    "causal_dsprites",
    "dsprites_pairs",
    "interventional_dsprites",
    "load_dsprites",
]
