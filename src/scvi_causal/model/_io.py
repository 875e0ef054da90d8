"""Saving models without ever leaving a half-written model on disk."""

from __future__ import annotations

import os
import shutil
import tempfile

from scvi.model.base._constants import SAVE_KEYS


class AtomicSaveMixin:
    """:meth:`save` of :class:`scvi.model.base.BaseModelClass`, made atomic.

    Relies only on ``BaseModelClass.save`` (called with a staging folder); place it before
    ``BaseModelClass`` among the bases.
    """

    def save(
        self,
        dir_path: str | os.PathLike,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        save_kwargs: dict | None = None,
        legacy_mudata_format: bool = False,
        datamodule=None,
        **anndata_write_kwargs,
    ):
        """Save the model; an interrupted or failed save leaves the previous model intact.

        Same arguments and files as :meth:`scvi.model.base.BaseModelClass.save`, whose files
        are first written to a hidden staging folder next to ``dir_path`` (same parent folder,
        hence the same file system) and then moved into place:

        * a new ``dir_path`` is the staging folder renamed, in one atomic step;
        * an existing ``dir_path`` (``overwrite=True``) keeps its other files: the model's
          files of this ``prefix`` (``model.pt``, ``adata.h5ad`` / ``mdata.h5mu``) are moved
          aside, the new ones moved in, the old ones deleted. If a step fails, the old files are
          put back. An ``adata.h5ad`` of the previous save that this save does not write (no
          ``save_anndata``) is removed, so that :meth:`load` never pairs the new weights with
          old data.

        If anything fails (an error while writing, a full disk, an interrupt), the staging
        folder is removed and the exception raised; ``dir_path`` holds the previous model, or
        does not exist if there was none.

        Parameters
        ----------
        dir_path
            Folder of the saved model.
        prefix
            Prefix of the file names.
        overwrite
            Replace the model in an existing ``dir_path``. If ``False`` and ``dir_path``
            exists, a ``ValueError`` is raised (as in scvi-tools).
        save_anndata
            Also save the AnnData (or MuData).
        save_kwargs
            Keyword arguments of :func:`torch.save`.
        legacy_mudata_format
            See :meth:`scvi.model.base.BaseModelClass.save`.
        datamodule
            See :meth:`scvi.model.base.BaseModelClass.save` (experimental in scvi-tools).
        **anndata_write_kwargs
            Keyword arguments of :meth:`anndata.AnnData.write`.

        Examples
        --------
        >>> model.save("models/screen1", save_anndata=True)  # doctest: +SKIP
        >>> model.train(max_epochs=100)  # doctest: +SKIP
        >>> model.save("models/screen1", overwrite=True)  # doctest: +SKIP
        >>> model = SparseShiftVI.load("models/screen1")  # doctest: +SKIP
        """
        target = os.path.abspath(os.fspath(dir_path))
        if os.path.lexists(target) and not overwrite:
            raise ValueError(
                f"{dir_path} already exists. Please provide another directory for saving."
            )
        if os.path.lexists(target) and not os.path.isdir(target):
            raise NotADirectoryError(f"{dir_path} exists and is not a folder.")
        parent, name = os.path.split(target)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".saving", dir=parent)
        try:
            new = os.path.join(staging, "new")
            super().save(
                new,
                prefix=prefix,
                overwrite=False,
                save_anndata=save_anndata,
                save_kwargs=save_kwargs,
                legacy_mudata_format=legacy_mudata_format,
                datamodule=datamodule,
                **anndata_write_kwargs,
            )
            _sync_files(new)
            if os.path.lexists(target):
                model_files = {
                    f"{prefix or ''}{fname}"
                    for fname in (
                        SAVE_KEYS.MODEL_FNAME,
                        SAVE_KEYS.ADATA_FNAME,
                        SAVE_KEYS.MDATA_FNAME,
                    )
                }
                _swap_files(new, target, os.path.join(staging, "old"), model_files)
            else:
                os.rename(new, target)
            _sync_dir(parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _swap_files(new: str, target: str, old: str, model_files: set[str]) -> None:
    """Move ``model_files`` present in ``target`` to ``old`` and the files of ``new`` into
    ``target``; on failure, move everything back."""
    written = sorted(os.listdir(new))
    replaced = sorted(
        n for n in model_files | set(written) if os.path.lexists(os.path.join(target, n))
    )
    os.mkdir(old)
    moved, placed = [], []
    try:
        for n in replaced:
            os.rename(os.path.join(target, n), os.path.join(old, n))
            moved.append(n)
        for n in written:
            os.rename(os.path.join(new, n), os.path.join(target, n))
            placed.append(n)
    except BaseException:
        for n in placed:
            os.rename(os.path.join(target, n), os.path.join(new, n))
        for n in moved:
            os.rename(os.path.join(old, n), os.path.join(target, n))
        raise
    _sync_dir(target)


def _sync_files(folder: str) -> None:
    """Flush the files of ``folder`` to disk before they are renamed into place."""
    for n in os.listdir(folder):
        path = os.path.join(folder, n)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _sync_dir(folder: str) -> None:
    """Flush a folder's entries (the renames); not possible on every platform."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
