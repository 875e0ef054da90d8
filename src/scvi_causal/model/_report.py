"""Target-identification report: what each perturbation targets and what each unit means."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi.module._constants import MODULE_KEYS

from scvi_causal._constants import EFFECTS_CHUNK
from scvi_causal.metrics._counterfactual import log_fold_change
from scvi_causal.metrics._dag import descendant_depths

from ._validation import source_cells

logger = logging.getLogger(__name__)


class ReportMixin:
    """Latent-unit gene effects and the target-identification report.

    Mixed into :class:`~scvi_causal.model.SparseShiftVI`.
    """

    def _source_subset(self, adata, source_category, max_cells: int, seed: int) -> AnnData:
        adata = self._validate_anndata(adata)
        labels = self._perturbation_labels(adata)
        _, idx = source_cells(
            labels, self.control_categories_, source_category, all_without_controls=True
        )
        if len(idx) > max_cells:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_cells, replace=False))
        return adata[idx].copy()

    @torch.inference_mode()
    def get_latent_gene_effects(
        self,
        adata: AnnData | None = None,
        delta: float = 1.0,
        source_category: str | list[str] | None = None,
        max_cells: int = 1000,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> pd.DataFrame:
        """What each latent unit means in genes: the effect of moving it on decoded expression.

        Source cells (controls by default; every cell for a screen without controls) are
        encoded to their posterior means, latent unit ``k`` is moved by ``delta`` (prior
        standard deviations) and the cells are decoded with their own library size and
        covariates. The effect is the log fold change (see
        :func:`~scvi_causal.metrics.log_fold_change`) of the mean decoded expression against
        that of the unmoved cells.

        Parameters
        ----------
        adata
            AnnData with the source cells (default: the training data).
        delta
            Size of the move of each unit (the prior has unit variance).
        source_category
            Labels of the source cells (default: controls).
        max_cells
            At most this many source cells (a random subset, ``seed``).
        batch_size
            Minibatch size.
        seed
            Seed of the subset.

        Returns
        -------
        pandas.DataFrame
            Latent units ``z0..z{K-1}`` x genes, log fold changes.

        Examples
        --------
        >>> effects = model.get_latent_gene_effects()  # doctest: +SKIP
        >>> effects.loc["z3"].nlargest(10)  # genes up when z3 increases  # doctest: +SKIP
        """
        source = self._source_subset(adata, source_category, max_cells, seed)
        n_latent = self.module.n_latent
        self.module.eval()
        sums = torch.zeros(n_latent + 1, source.n_vars, dtype=torch.float64)
        dl = self._make_data_loader(adata=source, batch_size=batch_size)
        eye = torch.eye(n_latent, device=self.device) * delta
        for tensors in dl:
            inf = self.module.inference(**self.module._get_inference_input(tensors))
            z0 = inf[MODULE_KEYS.QZ_KEY].loc
            for k in range(n_latent + 1):
                z = z0 if k == n_latent else z0 + eye[k]
                scale = self.module.decode(tensors, z, inf[MODULE_KEYS.LIBRARY_KEY]).scale
                sums[k] += scale.sum(0).double().cpu()
        means = (sums / source.n_obs).numpy()
        effects = np.stack(
            [log_fold_change(means[k][None], means[n_latent][None]) for k in range(n_latent)]
        )
        return pd.DataFrame(effects, index=self._latent_columns(), columns=source.var_names)

    @torch.inference_mode()
    def get_perturbation_gene_effects(
        self,
        adata: AnnData | None = None,
        perturbations: list[str] | None = None,
        max_cells: int = 1000,
        batch_size: int | None = None,
        seed: int = 0,
        shift: str = "auto",
        residual: bool = True,
    ) -> pd.DataFrame:
        """Predicted log fold change of every perturbation against control, per gene.

        Control cells are decoded under each perturbation with
        :meth:`~scvi_causal.model.SparseShiftVI.predict` (reading ``shift``) and compared with
        their decoding under control (the same cells), so decoder bias cancels out.

        Parameters
        ----------
        adata
            AnnData with control cells (default: the training data).
        perturbations
            Labels (default: every trained perturbation).
        max_cells
            At most this many control cells (random subset, ``seed``).
        batch_size
            Minibatch size.
        seed
            Seed of the subset.
        shift
            Reading of the latent shift (see :meth:`~scvi_causal.model.SparseShiftVI.predict`):
            ``"model"`` gives what the target graph and the direct effects say.
        residual
            Include the residual effects (see :meth:`~scvi_causal.model.SparseShiftVI.predict`).

        Returns
        -------
        pandas.DataFrame
            Perturbations x genes, log fold changes against control.

        Examples
        --------
        >>> lfc = model.get_perturbation_gene_effects()  # doctest: +SKIP
        """
        if not self.control_categories_:
            raise ValueError("Predicted effects against control need control cells.")
        perturbations = list(perturbations or self.perturbation_names_)
        source = self._source_subset(adata, None, max_cells, seed)
        control = self.control_categories_[0]
        rows = []
        # a few perturbations at a time: predict holds every block in memory (a genome-wide
        # screen would need cells x perturbations x genes at once)
        for start in range(0, len(perturbations), EFFECTS_CHUNK):
            chunk = perturbations[start : start + EFFECTS_CHUNK]
            pred = self.predict(
                source,
                perturbations=chunk + [control],
                batch_size=batch_size,
                shift=shift,
                residual=residual,
            )
            labels = pred.obs["perturbation"].astype(str).to_numpy()
            base = pred.X[labels == control]
            rows += [log_fold_change(pred.X[labels == p], base) for p in chunk]
        return pd.DataFrame(np.stack(rows), index=perturbations, columns=source.var_names)

    def target_report(
        self,
        output_dir: str | Path | None = None,
        n_top_genes: int = 10,
        threshold: float = 0.5,
        delta: float = 1.0,
        max_cells: int = 1000,
        seed: int = 0,
        min_direct_effect: float = 0.1,
    ) -> dict:
        """Target-identification report: tables and figures, optionally written to disk.

        * ``graph``: the perturbation x unit target graph (inclusion probabilities);
        * ``targets``: for every perturbation, its targeted units (probability >= ``threshold``)
          with probability and learned shift;
        * ``unit_genes``: for every latent unit, its top up- and down-regulated genes when the
          unit increases (:meth:`get_latent_gene_effects`);
        * ``perturbation_genes``: for every perturbation, its top responding genes under its
          targets and direct effects (:meth:`get_perturbation_gene_effects` with
          ``shift="model"``: the report explains by the graph; :meth:`predict`'s default reads
          the posterior and may move more genes; needs control cells);
        * ``direct_genes``: for every perturbation, its largest direct gene-level effects
          (:meth:`get_direct_effects`, at least ``min_direct_effect`` in absolute value): the
          genes it moves without going through a latent unit, e.g. a guide's own gene;
        * ``residual_genes``: the same for the residual effects
          (:meth:`get_residual_effects`): changes its training cells show beyond what the
          targets and direct effects carry, which :meth:`predict` adds (e.g. a knockdown the
          encoder absorbed into the cells' latents);
        * ``off_mask``: for every perturbation, the share of its cells' latent displacement
          on units it does not target and the largest such unit
          (:meth:`get_off_mask_shifts`): a large share flags a possibly missed target;
        * ``figures``: the clustered target graph and a heatmap of the units' top genes;
        * with ``latent_graph="dag"``: ``latent_graph`` (:meth:`get_latent_graph`), its figure
          in ``figures``, and ``cascade``: for every perturbation its direct targets (depth 0)
          and then their descendants through the edges of ``get_latent_graph(dag=True)``
          (probability >= 0.5, acyclic), each with its depth (edges below the nearest direct
          target) and its parents in the cascade.

        With ``output_dir``, writes the tables as CSV, the figures as PNG and ``report.md``
        that shows them together.

        Parameters
        ----------
        output_dir
            Directory to write ``report.md``, CSVs and PNGs into (created if needed).
        n_top_genes
            Genes listed per unit and direction, and per perturbation.
        threshold
            Inclusion probability from which a unit counts as a target.
        delta
            Move of a unit for its gene effects (prior standard deviations).
        max_cells
            Source cells used for gene effects.
        seed
            Seed of the source-cell subset.
        min_direct_effect
            Smallest absolute direct effect (log scale) listed in ``direct_genes``.

        Returns
        -------
        dict
            ``graph``, ``targets``, ``unit_effects``, ``unit_genes``, ``perturbation_effects``
            (None without controls), ``perturbation_genes`` (None without controls),
            ``direct_genes``, ``off_mask``, ``latent_graph`` and ``cascade`` (None without a
            latent graph) and ``figures`` (name -> matplotlib Figure).

        Examples
        --------
        >>> report = model.target_report("report/")  # doctest: +SKIP
        >>> report["targets"].head()  # doctest: +SKIP
        """
        from scvi_causal.pl import latent_graph, target_graph_heatmap, unit_gene_heatmap

        self._require_sparse_prior("A target report")
        graph = self.get_target_graph()
        shifts = self.get_perturbation_shifts(masked=False)
        targets = [
            {
                "perturbation": p,
                "unit": u,
                "probability": float(graph.loc[p, u]),
                "shift": float(shifts.loc[p, u]),
            }
            for p in graph.index
            for u in graph.columns
            if graph.loc[p, u] >= threshold
        ]
        targets = pd.DataFrame(
            targets, columns=["perturbation", "unit", "probability", "shift"]
        ).astype({"perturbation": str, "unit": str, "probability": float, "shift": float})
        unit_effects = self.get_latent_gene_effects(delta=delta, max_cells=max_cells, seed=seed)
        unit_genes = _top_genes(unit_effects, n_top_genes, "unit", both_directions=True)
        pert_effects = pert_genes = None
        if self.control_categories_:
            pert_effects = self.get_perturbation_gene_effects(
                max_cells=max_cells, seed=seed, shift="model", residual=False
            )
            pert_genes = _top_genes(pert_effects, n_top_genes, "perturbation")
        figures = {
            "target_graph": target_graph_heatmap(
                graph, cluster=len(graph) > 1, max_rows=200, title="Target graph"
            ),
            "unit_genes": unit_gene_heatmap(unit_effects, n_top=max(1, min(n_top_genes, 5))),
        }
        report = {
            "graph": graph,
            "targets": targets,
            "unit_effects": unit_effects,
            "unit_genes": unit_genes,
            "perturbation_effects": pert_effects,
            "perturbation_genes": pert_genes,
            "direct_genes": _direct_genes(
                self.get_direct_effects(), n_top_genes, min_direct_effect
            ),
            "residual_genes": _direct_genes(
                self.get_residual_effects(), n_top_genes, min_direct_effect
            ),
            "off_mask": self.get_off_mask_shifts(threshold=threshold),
            "latent_graph": None,
            "cascade": None,
            "figures": figures,
        }
        if self.module.latent_graph == "dag":
            report["latent_graph"] = self.get_latent_graph()
            report["cascade"] = _cascade_table(
                graph, report["latent_graph"], self.get_latent_graph(dag=True), threshold
            )
            figures["latent_graph"] = latent_graph(report["latent_graph"], title="Latent graph")
        if output_dir is not None:
            _write_report(report, Path(output_dir))
        return report


def _cascade_table(
    target_graph: pd.DataFrame,
    latent_probs: pd.DataFrame,
    dag: pd.DataFrame,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """The cascade of every perturbation: its direct targets, then their descendants.

    Parameters
    ----------
    target_graph
        Perturbations x units target inclusion probabilities.
    latent_probs
        Units x units edge inclusion probabilities (rows = parent).
    dag
        Units x units 0/1 acyclic graph whose edges the cascade follows.
    threshold
        Target probability from which a unit is a direct target.

    Returns
    -------
    pandas.DataFrame
        One row per (perturbation, unit) in a cascade, in order of depth: ``perturbation``,
        ``unit``, ``role`` (``"direct"`` or ``"descendant"``), ``depth`` (0 for a direct target,
        else the number of edges below the nearest direct target), ``parents`` (the units one
        level up in the cascade with an edge into it, comma-separated) and ``probability`` (the
        target probability of a direct target, else the largest probability of an edge from
        those parents).
    """
    units = list(dag.columns)
    depths = descendant_depths(dag.to_numpy(dtype=float))
    edges = dag.to_numpy(dtype=float) >= 0.5
    probs = latent_probs.loc[units, units].to_numpy(dtype=float)
    rows = []
    for pert, row in target_graph[units].iterrows():
        direct = np.flatnonzero(row.to_numpy(dtype=float) >= threshold)
        if direct.size == 0:
            continue
        depth = depths[direct].min(axis=0)
        for k in sorted(np.flatnonzero(np.isfinite(depth)), key=lambda k: (depth[k], k)):
            d = int(depth[k])
            parents = [i for i in np.flatnonzero(edges[:, k]) if d > 0 and depth[i] == d - 1]
            rows.append(
                {
                    "perturbation": pert,
                    "unit": units[k],
                    "role": "direct" if d == 0 else "descendant",
                    "depth": d,
                    "parents": ", ".join(units[i] for i in parents),
                    "probability": float(row.iloc[k] if d == 0 else probs[parents, k].max()),
                }
            )
    columns = ["perturbation", "unit", "role", "depth", "parents", "probability"]
    return pd.DataFrame(rows, columns=columns).astype(
        {"perturbation": str, "unit": str, "role": str, "depth": np.int64, "probability": float}
    )


def _top_genes(effects: pd.DataFrame, n: int, name: str, both_directions: bool = False):
    rows = []
    for key, row in effects.iterrows():
        if both_directions:
            picks = [("up", row.nlargest(n)), ("down", row.nsmallest(n))]
        else:
            picks = [("", row.loc[row.abs().nlargest(n).index])]
        for direction, top in picks:
            for rank, (gene, value) in enumerate(top.items(), start=1):
                rec = {name: key, "rank": rank, "gene": gene, "lfc": float(value)}
                if both_directions:
                    rec["direction"] = direction
                rows.append(rec)
    return pd.DataFrame(rows)


def _direct_genes(effects: pd.DataFrame, n: int, min_effect: float) -> pd.DataFrame:
    """Largest direct effects of each perturbation, at least ``min_effect`` in size."""
    table = _top_genes(effects, n, "perturbation")
    if table.empty:
        return pd.DataFrame(columns=["perturbation", "rank", "gene", "effect"])
    table = table.rename(columns={"lfc": "effect"})
    return table[table["effect"].abs() >= min_effect].reset_index(drop=True)


def _write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ["graph", "unit_effects", "perturbation_effects", "off_mask", "latent_graph"]:
        if report[name] is not None:
            report[name].to_csv(out / f"{name}.csv")
    tables = ["targets", "unit_genes", "perturbation_genes", "direct_genes", "residual_genes"]
    for name in [*tables, "cascade"]:
        if report[name] is not None:
            report[name].to_csv(out / f"{name}.csv", index=False)
    for name, fig in report["figures"].items():
        fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
    targets = report["targets"]
    per_pert = (
        targets.assign(t=lambda d: d["unit"] + " (" + d["probability"].round(2).astype(str) + ")")
        .groupby("perturbation")["t"]
        .apply(", ".join)
        .reindex(report["graph"].index)
        .fillna("none")
    )
    unit_genes = report["unit_genes"]
    lines = [
        "# Target-identification report",
        "",
        f"{len(report['graph'])} perturbations, {report['graph'].shape[1]} latent units, "
        f"{len(targets)} edges.",
        "",
        "![target graph](target_graph.png)",
        "",
        "## Latent units: top genes (effect of increasing the unit)",
        "",
        "![unit genes](unit_genes.png)",
        "",
        "| unit | up | down |",
        "|---|---|---|",
    ]
    for unit in report["unit_effects"].index:
        sub = unit_genes[unit_genes["unit"] == unit]
        up = ", ".join(sub.loc[sub["direction"] == "up", "gene"].astype(str))
        down = ", ".join(sub.loc[sub["direction"] == "down", "gene"].astype(str))
        lines.append(f"| {unit} | {up} | {down} |")
    lines += [
        "",
        "## Perturbations: targeted units and predicted top genes",
        "",
        "Off-mask: the share of the perturbation's mean latent displacement that falls on "
        "units it does not target, and the largest such unit (a large share flags a "
        "possibly missed target). Direct effects: genes the perturbation moves without "
        "a latent unit (log scale), e.g. a guide's own gene.",
        "",
        "| perturbation | targets (probability) | off-mask (largest unit) | "
        "direct effects | residual effects | top genes (targets and direct effects) |",
        "|---|---|---|---|---|---|",
    ]
    pg = report["perturbation_genes"]
    off = report["off_mask"]
    direct = report["direct_genes"]
    residual = report["residual_genes"]

    def listed(table):
        return (
            ", ".join(
                f"{g} ({v:+.2f})" for g, v in zip(table["gene"], table["effect"], strict=True)
            )
            or "none"
        )

    for pert in report["graph"].index:
        genes = ""
        sub_direct = direct[direct["perturbation"] == pert]
        direct_text = listed(sub_direct)
        residual_text = listed(residual[residual["perturbation"] == pert])
        if pg is not None:
            sub = pg[pg["perturbation"] == pert]
            if pert not in set(targets["perturbation"]) and sub_direct.empty:
                # no targeted unit, no direct effect: decoded expression equals control
                genes = "none (no targeted unit, no direct effect)"
            else:
                genes = ", ".join(
                    f"{g} ({v:+.2f})" for g, v in zip(sub["gene"], sub["lfc"], strict=True)
                )
        off_text = ""
        if isinstance(off.loc[pert, "top_off_mask_unit"], str):
            off_text = (
                f"{off.loc[pert, 'off_mask_fraction']:.0%} "
                f"({off.loc[pert, 'top_off_mask_unit']} "
                f"{off.loc[pert, 'top_off_mask_shift']:+.2f})"
            )
        lines.append(
            f"| {pert} | {per_pert.loc[pert]} | {off_text} | {direct_text} | {residual_text} "
            f"| {genes} |"
        )
    if report["cascade"] is not None:
        lines += _cascade_lines(report["cascade"], report["graph"].index)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _cascade_lines(cascade: pd.DataFrame, perturbations) -> list[str]:
    lines = [
        "",
        "## Latent graph: the cascade of each perturbation",
        "",
        "![latent graph](latent_graph.png)",
        "",
        "Direct targets, then the units below them in the learned graph (edges with "
        "probability >= 0.5, acyclic), with their depth and their parents in the cascade.",
        "",
        "| perturbation | direct targets | descendants (depth, via) |",
        "|---|---|---|",
    ]
    for pert in perturbations:
        sub = cascade[cascade["perturbation"] == pert]
        direct = ", ".join(sub.loc[sub["role"] == "direct", "unit"]) or "none"
        below = sub[sub["role"] == "descendant"]
        text = (
            ", ".join(
                f"{u} ({d}, via {v})"
                for u, d, v in zip(below["unit"], below["depth"], below["parents"], strict=True)
            )
            or "none"
        )
        lines.append(f"| {pert} | {direct} | {text} |")
    return lines
