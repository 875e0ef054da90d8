"""A small convolutional classifier of 64x64 images: the decision that counterfactual
explanations (:func:`~scvi_causal.images.latent_counterfactuals`) explain, or an independent
reader of labels after an intervention."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ._vae import _image_tensor, _training_loader


class ConvClassifier(nn.Module):
    """Four stride-2 convolutions and a dense layer to class logits (the encoder's trunk).

    ``forward`` maps ``(n, 1, 64, 64)`` images in ``[0, 1]`` to ``(n, n_classes)`` logits, so
    it is differentiable in the pixels (what a counterfactual search needs).
    """

    def __init__(self, n_classes: int, channels: int = 16, hidden: int = 64):
        super().__init__()
        layers = []
        for c_in in (1, channels, channels, channels):
            layers += [nn.Conv2d(c_in, channels, 4, 2, 1), nn.ReLU()]
        self.net = nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(channels * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 1, 64, 64)`` images to ``(n, n_classes)`` logits."""
        return self.net(x)


class ImageClassifier:
    """A small CNN that predicts one label (e.g. the dSprites shape) from 64x64 images.

    Trained with Adam on the cross-entropy; the network is :attr:`module`
    (:class:`ConvClassifier`), whose logits are differentiable in the pixels.

    Parameters
    ----------
    n_classes
        Number of classes (3 for the dSprites shape).
    channels, hidden
        Width of the convolutional and dense layers.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.zeros((40, 64, 64), dtype=np.float32)
    >>> labels = np.repeat([0, 1], 20)
    >>> images[labels == 0, :, :32] = 1.0  # class 0: left half lit
    >>> images[labels == 1, :, 32:] = 1.0  # class 1: right half lit
    >>> clf = ImageClassifier(n_classes=2)
    >>> clf.train(images, labels, max_epochs=20, seed=0)
    >>> bool((clf.predict(images) == labels).mean() > 0.9)
    True
    >>> clf.predict_proba(images).shape
    (40, 2)
    """

    def __init__(self, n_classes: int = 3, channels: int = 16, hidden: int = 64):
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"`n_classes` must be an integer >= 2, got {n_classes!r}.")
        self.init_params_ = {"n_classes": n_classes, "channels": channels, "hidden": hidden}
        self.n_classes = n_classes
        self.module = ConvClassifier(n_classes, channels, hidden)
        self.is_trained_ = False
        self.history_ = pd.DataFrame()

    def __repr__(self) -> str:
        return f"ImageClassifier(n_classes={self.n_classes}, trained={self.is_trained_})"

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch training loss and accuracy."""
        return self.history_

    def _labels(self, labels, n: int) -> torch.Tensor:
        arr = np.asarray(labels)
        if arr.shape != (n,):
            raise ValueError(f"`labels` must be ({n},) (one class per image), got {arr.shape}.")
        if (
            not np.issubdtype(arr.dtype, np.integer)
            or (arr < 0).any()
            or (arr >= self.n_classes).any()
        ):
            raise ValueError(f"`labels` must be integer classes in [0, {self.n_classes}).")
        return torch.from_numpy(arr.astype(np.int64))

    def train(
        self,
        images,
        labels,
        max_epochs: int = 5,
        batch_size: int = 32,
        lr: float = 1e-3,
        seed: int | None = None,
        num_workers: int = 0,
    ) -> None:
        """Fit with Adam on the cross-entropy (minibatches as the image models draw them).

        Parameters
        ----------
        images
            ``(n, 64, 64)`` array in ``[0, 1]``.
        labels
            ``(n,)`` integer classes.
        max_epochs, batch_size, lr
            Optimisation settings.
        seed
            Seed for minibatch order.
        num_workers
            Data-loader workers.
        """
        x = _image_tensor(images)
        y = self._labels(labels, len(x))
        if len(x) < 2:
            raise ValueError("Need at least 2 images to train.")
        loader, _ = _training_loader((x, y), batch_size, num_workers, seed, max_epochs, 0)
        optimizer = torch.optim.Adam(self.module.parameters(), lr=lr)
        self.module.train()
        rows = []
        for epoch in range(max_epochs):
            total, hits, count = 0.0, 0, 0
            for xb, yb in loader:
                logits = self.module(xb.float().unsqueeze(1))
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(yb)
                hits += int((logits.argmax(1) == yb).sum())
                count += len(yb)
            rows.append(
                {"epoch": epoch, "loss_train": total / count, "accuracy_train": hits / count}
            )
        self.module.eval()
        history = pd.DataFrame(rows).set_index("epoch")
        if len(self.history_):
            history.index += self.history_.index.max() + 1
            history = pd.concat([self.history_, history])
        self.history_ = history
        self.is_trained_ = True

    @torch.inference_mode()
    def predict_proba(self, images, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``."""
        x = _image_tensor(images)
        self.module.eval()
        out = [
            torch.softmax(self.module(x[s : s + batch_size].float().unsqueeze(1)), 1).numpy()
            for s in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.n_classes), np.float32)

    def predict(self, images, batch_size: int = 1024) -> np.ndarray:
        """Most probable class ``(n,)``."""
        return self.predict_proba(images, batch_size).argmax(1).astype(np.int64)
