"""Real perturbation screens: loaders with a standard layout, and screen preparation."""

from __future__ import annotations

import logging
import os
import shutil
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

logger = logging.getLogger(__name__)

PERTURBATION_KEY = "perturbation"

#: Files of the real screens kept next to the project (``../shared/data``) or in a data folder.
PAPALEXI_FILE = "papalexi2021_thp1_sceptredata_lowmoi.h5ad"
ZHAO_FILE = "zhao2021_glioblastoma_panobinostat_lemur.h5ad"
GASPERINI_FILE = "gasperini2019_k562_highmoi_sceptre_subset.h5ad"
#: Original public sources (scPerturb, Peidli et al. 2024, Zenodo record 7041849): all genes.
PAPALEXI_URL = "https://zenodo.org/record/7041849/files/PapalexiSatija2021_eccite_RNA.h5ad"
ZHAO_URL = "https://zenodo.org/record/7041849/files/ZhaoSims2021.h5ad"
GASPERINI_URL = "https://zenodo.org/record/7041849/files/GasperiniShendure2019_highMOI.h5ad"


def data_dirs() -> list[Path]:
    """Folders searched for data files, in order.

    ``$SCVI_CAUSAL_DATA`` if set, then ``../shared/data`` relative to the working directory and
    to the repository root, then the download cache ``~/.cache/scvi_causal``.

    Examples
    --------
    >>> isinstance(data_dirs()[-1], Path)
    True
    """
    dirs = []
    if os.environ.get("SCVI_CAUSAL_DATA"):
        dirs.append(Path(os.environ["SCVI_CAUSAL_DATA"]))
    dirs.append(Path.cwd().parent / "shared" / "data")
    dirs.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    dirs.append(_cache_dir())
    return dirs


def _cache_dir() -> Path:
    return Path(os.environ.get("SCVI_CAUSAL_DATA") or Path.home() / ".cache" / "scvi_causal")


def _find(name: str) -> Path | None:
    for d in data_dirs():
        if (d / name).exists():
            return d / name
    return None


def download(url: str, path: Path) -> Path:
    """Download ``url`` to ``path`` (through a temporary file, so a failure leaves nothing).

    Examples
    --------
    >>> download(PAPALEXI_URL, Path("papalexi.h5ad"))  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    logger.info("Downloading %s to %s", url, path)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read(path: str | Path | None, default_file: str, source_file: str, url: str) -> tuple:
    """Read a screen: ``path``, else the file kept in :func:`data_dirs`, else the original
    source (``source_file``, downloaded from ``url`` into the cache when absent)."""
    file = Path(path) if path is not None else _find(default_file)
    if file is None:
        file = _find(source_file) or download(url, _cache_dir() / source_file)
    if not Path(file).exists():
        raise FileNotFoundError(f"No such file: {file}")
    return ad.read_h5ad(file), Path(file)


def _counts_csr(adata: ad.AnnData) -> None:
    x = adata.X
    x = sparse.csr_matrix(x) if not sparse.issparse(x) else x.tocsr()
    adata.X = x.astype(np.float32)


def _standardise(adata, labels: pd.Series, control: str, source: str) -> ad.AnnData:
    adata.obs[PERTURBATION_KEY] = pd.Categorical(labels.astype(str).to_numpy())
    adata.uns["perturbation_screen"] = {
        "perturbation_key": PERTURBATION_KEY,
        "control_category": control,
        "source": source,
    }
    _counts_csr(adata)
    return adata


def papalexi_2021(path: str | Path | None = None, confident_only: bool = True) -> ad.AnnData:
    """Papalexi et al. 2021 ECCITE-seq screen of THP-1 cells :cite:p:`papalexi2021characterizing`.

    CRISPR knockouts of 25 genes around PD-L1 / IFN-gamma signalling plus non-targeting guides.
    The default file (``papalexi2021_thp1_sceptredata_lowmoi.h5ad``, 299 genes, from the
    sceptredata package) is looked up in :func:`data_dirs`; when it is absent, the scPerturb
    version (all genes) is downloaded from Zenodo and mapped to the same layout.

    Parameters
    ----------
    path
        An ``.h5ad`` file to read instead.
    confident_only
        Keep only cells whose dominant guide is confident (>= 5 UMI and >= 80 % of the guide
        UMIs; ``obs["confident"]``), when the file has that column.

    Returns
    -------
    anndata.AnnData
        Raw counts in ``X`` (CSR float32), ``obs["perturbation"]`` the targeted gene
        (``"non-targeting"`` for controls), the file's other ``obs`` columns (``bio_rep``,
        ...), and ``uns["perturbation_screen"]`` with the key, the control label and the source.

    Examples
    --------
    >>> adata = papalexi_2021()  # doctest: +SKIP
    >>> adata.obs["perturbation"].value_counts().head(3)  # doctest: +SKIP
    """
    adata, file = _read(path, PAPALEXI_FILE, "PapalexiSatija2021_eccite_RNA.h5ad", PAPALEXI_URL)
    if "target" in adata.obs:  # sceptredata layout
        labels = adata.obs["target"]
        if confident_only and "confident" in adata.obs:
            adata = adata[adata.obs["confident"].astype(bool).to_numpy()].copy()
            labels = adata.obs["target"]
        control = "non-targeting"
    elif "perturbation" in adata.obs:  # scPerturb layout: 'control' / gene names
        raw = adata.obs["perturbation"].astype(str)
        labels = raw.where(raw != "control", "non-targeting")
        control = "non-targeting"
    else:
        raise ValueError(f"{file}: no 'target' or 'perturbation' column in obs.")
    return _standardise(adata, labels, control, file.name)


def zhao_2021(path: str | Path | None = None) -> ad.AnnData:
    """Zhao et al. 2021 glioblastoma slices, drug vs vehicle :cite:p:`zhao2021deconvolution`.

    A drug perturbation (0.2 uM panobinostat) against vehicle (DMSO) in tumour slices of five
    patients (``obs["patient_id"]``, a batch). The default file (5,000 cells x 300 genes, from
    the lemur package) is looked up in :func:`data_dirs`; when it is absent the scPerturb
    version (all genes, all drugs) is downloaded and restricted to panobinostat and vehicle.

    Parameters
    ----------
    path
        An ``.h5ad`` file to read instead.

    Returns
    -------
    anndata.AnnData
        Raw counts in ``X`` (CSR float32), ``obs["perturbation"]`` (``"ctrl"`` or
        ``"panobinostat"``), ``obs["patient_id"]`` and ``uns["perturbation_screen"]``.

    Examples
    --------
    >>> adata = zhao_2021()  # doctest: +SKIP
    """
    adata, file = _read(path, ZHAO_FILE, "ZhaoSims2021.h5ad", ZHAO_URL)
    if "condition" in adata.obs:  # lemur layout
        labels = adata.obs["condition"].astype(str)
    elif "perturbation" in adata.obs:  # scPerturb layout
        raw = adata.obs["perturbation"].astype(str).str.lower()
        keep = raw.isin(["control", "panobinostat"]).to_numpy()
        adata = adata[keep].copy()
        labels = raw[keep].replace({"control": "ctrl"})
        if "patient_id" not in adata.obs and "patient" in adata.obs:
            adata.obs["patient_id"] = adata.obs["patient"].astype(str)
    else:
        raise ValueError(f"{file}: no 'condition' or 'perturbation' column in obs.")
    return _standardise(adata, labels, "ctrl", file.name)


def gasperini_2019(path: str | Path | None = None) -> ad.AnnData:
    """Gasperini et al. 2019 high-MOI CRISPRi screen of K562 cells :cite:p:`gasperini2019genome`.

    Each cell of the full screen carries about 28 guides, against candidate enhancers and,
    as positive controls, gene promoters (``*_TSS`` groups: CRISPRi at a promoter must knock
    that gene down). The default file (the subset shipped by the sceptre package: 40,002 cells x
    366 genes, 28 guide groups) is looked up in :func:`data_dirs`; when it is absent the
    scPerturb version of the high-MOI screen is downloaded.

    Labels: ``obs["perturbation"]`` joins the guide groups a cell carries with ``"+"``
    (non-targeting guides dropped); a cell with no targeting guide of the subset is
    ``"control"``. In a high-MOI screen such a control is not a clean one: it carries guides
    outside the subset (the sceptre convention, where every cell serves as a control for the
    guides it does not carry); this is documented, not hidden.

    Parameters
    ----------
    path
        An ``.h5ad`` file to read instead.

    Returns
    -------
    anndata.AnnData
        Raw counts in ``X`` (CSR float32, genes as Ensembl ids), ``obs["perturbation"]``, the
        file's ``obs`` (``batch``, ``grna_groups``), ``obsm["grna_counts"]`` when present,
        ``uns["positive_controls"]`` (guide group -> Ensembl id of its own gene) and
        ``uns["perturbation_screen"]``.

    Examples
    --------
    >>> adata = gasperini_2019()  # doctest: +SKIP
    >>> adata.uns["positive_controls"]["MRPL9_TSS"]  # doctest: +SKIP
    'ENSG00000143436'
    """
    adata, file = _read(path, GASPERINI_FILE, "GasperiniShendure2019_highMOI.h5ad", GASPERINI_URL)
    if "grna_groups" in adata.obs:  # sceptre layout: groups joined by '+'
        raw, sep = adata.obs["grna_groups"].astype(str), "+"
    elif "perturbation" in adata.obs:  # scPerturb layout: targets joined by '_' or '+'
        raw = adata.obs["perturbation"].astype(str)
        sep = "+" if raw.str.contains("+", regex=False).any() else "_"
    else:
        raise ValueError(f"{file}: no 'grna_groups' or 'perturbation' column in obs.")
    empty = {"non-targeting", "none_of_subset", "control", "nan", ""}

    def label(value: str) -> str:
        groups = [g for g in value.split(sep) if g.strip() and g.strip() not in empty]
        return "+".join(sorted(groups)) if groups else "control"

    labels = raw.map(label)
    pairs = adata.uns.get("pc_pairs")
    if pairs is not None:
        adata.uns["positive_controls"] = {
            str(g): str(r) for g, r in zip(pairs["grna_group"], pairs["response_id"], strict=True)
        }
    return _standardise(adata, labels, "control", file.name)


def prepare_screen(
    adata: ad.AnnData,
    perturbation_key: str = PERTURBATION_KEY,
    control_category: str | list[str] = "control",
    min_cells_per_perturbation: int = 50,
    n_top_genes: int | None = None,
    batch_key: str | None = None,
    keep_genes: Sequence[str] | None = None,
    keep_perturbed_genes: bool = True,
    delimiter: str = "+",
) -> ad.AnnData:
    """Filter a screen for modelling: rare perturbations out, optionally highly variable genes.

    Perturbations with fewer than ``min_cells_per_perturbation`` cells are dropped (controls
    never are), unused categories are removed, and with ``n_top_genes`` the highly variable
    genes are selected on the raw counts (scanpy ``flavor="seurat_v3"``, per batch when
    ``batch_key`` is given), plus the genes that must stay: ``keep_genes`` and, with
    ``keep_perturbed_genes``, every gene named like a perturbation (a CRISPR target's own
    gene, whose knockdown is the first thing to check, is often not highly variable). What was
    removed is logged and stored in ``adata.uns["prepare_screen"]``.

    Labels are counted as written: a combination ``"A+B"`` is one label. For a high-MOI screen
    (almost every cell a different combination) pass ``min_cells_per_perturbation=1`` and
    filter the columns of the perturbation matrix instead (``perturbation_obsm_key`` of
    :meth:`~scvi_causal.model.SparseShiftVI.setup_anndata`).

    Parameters
    ----------
    adata
        Raw counts in ``X``.
    perturbation_key
        Column of ``obs`` with the perturbation labels.
    control_category
        Label(s) of control cells; must be present.
    min_cells_per_perturbation
        Smallest number of cells a perturbation keeps.
    n_top_genes
        Number of highly variable genes to keep (``None``: all genes).
    batch_key
        Batch column for the gene selection.
    keep_genes
        Genes (``var_names``) kept whether highly variable or not.
    keep_perturbed_genes
        Also keep the genes whose name is a perturbation's (members of combinations
        included, split at ``delimiter``).
    delimiter
        Separator of combinations in the labels.

    Returns
    -------
    anndata.AnnData
        The filtered screen, a new object (the input is never modified).

    Examples
    --------
    >>> from scvi_causal.data import simulate_sparse_shift
    >>> adata = simulate_sparse_shift(n_perturbations=3, n_cells_per_perturbation=20)
    >>> out = prepare_screen(adata, min_cells_per_perturbation=25)
    >>> out.uns["prepare_screen"]["removed_perturbations"]
    {'p00': 20, 'p01': 20, 'p02': 20}
    """
    if perturbation_key not in adata.obs:
        raise KeyError(f"perturbation_key {perturbation_key!r} is not a column of adata.obs.")
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} is not a column of adata.obs.")
    controls = [control_category] if isinstance(control_category, str) else list(control_category)
    labels = adata.obs[perturbation_key].astype(str)
    counts = labels.value_counts()
    missing = [c for c in controls if c not in counts.index]
    if missing:
        raise ValueError(
            f"Control label(s) {missing} not found in adata.obs[{perturbation_key!r}]"
            f" (labels: {sorted(counts.index)[:10]} ...)."
        )
    if min_cells_per_perturbation < 1:
        raise ValueError("`min_cells_per_perturbation` must be >= 1.")
    rare = counts[(counts < min_cells_per_perturbation) & ~counts.index.isin(controls)]
    keep = ~labels.isin(rare.index).to_numpy()
    out = adata[keep].copy()
    out.obs[perturbation_key] = pd.Categorical(out.obs[perturbation_key].astype(str))
    n_genes_before = out.n_vars
    if n_top_genes is not None and n_top_genes < out.n_vars:
        import scanpy as sc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            hvg = sc.pp.highly_variable_genes(
                out, flavor="seurat_v3", n_top_genes=n_top_genes, batch_key=batch_key, inplace=False
            )
        selected = hvg["highly_variable"].to_numpy()
        wanted = set(map(str, keep_genes or []))
        if keep_perturbed_genes:
            wanted |= {m.strip() for label in counts.index for m in str(label).split(delimiter)}
        added = ~selected & out.var_names.isin(list(wanted))
        out = out[:, selected | added].copy()
        genes_added = [str(g) for g in out.var_names[added[selected | added]]]
    else:
        genes_added = []
    summary = {
        "removed_perturbations": {str(k): int(v) for k, v in sorted(rare.items())},
        "n_cells_removed": int((~keep).sum()),
        "n_genes_before": int(n_genes_before),
        "n_genes_kept": int(out.n_vars),
        "genes_kept_beyond_hvg": genes_added,
        "min_cells_per_perturbation": int(min_cells_per_perturbation),
    }
    out.uns["prepare_screen"] = summary
    if rare.size:
        logger.info(
            "prepare_screen removed %d perturbations with < %d cells: %s",
            rare.size,
            min_cells_per_perturbation,
            dict(rare),
        )
    return out
