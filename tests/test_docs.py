"""Cheap consistency checks of the documentation sources (no Sphinx build needed).

- every name in a subpackage's ``__all__`` is listed on the API page (``docs/api.md``);
- every key cited with ``:cite:p:``/``:cite:t:`` in ``src/`` or ``docs/`` has a BibTeX entry in
  ``docs/references.bib``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import scvi_causal

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SUBPACKAGES = [name for name in scvi_causal.__all__ if not name.startswith("_")]


def _api_entries() -> dict[str, set[str]]:
    """Names listed in the autosummary tables of ``docs/api.md``, by current module."""
    entries: dict[str, set[str]] = {}
    module = None
    in_table = False
    for line in (DOCS / "api.md").read_text().splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line.strip())
        if match:
            module, in_table = match.group(1), False
            continue
        if line.strip().startswith(".. autosummary::"):
            in_table = True
            continue
        if in_table and module is not None:
            stripped = line.strip()
            if stripped.startswith("```"):
                in_table = False
            elif stripped and not stripped.startswith(":"):
                entries.setdefault(module, set()).add(stripped.lstrip("~"))
    return entries


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_api_page_lists_all_public_names(package):
    exported = set(importlib.import_module(f"scvi_causal.{package}").__all__)
    listed = _api_entries().get(f"scvi_causal.{package}", set())
    missing = sorted(exported - listed)
    assert not missing, f"add {missing} to the scvi_causal.{package} table of docs/api.md"
    unknown = sorted(listed - exported)
    assert not unknown, f"docs/api.md lists {unknown}, not in scvi_causal.{package}.__all__"


def _cited_keys() -> set[str]:
    keys: set[str] = set()
    files = [*(ROOT / "src").rglob("*.py"), *DOCS.glob("*.md"), *(ROOT / "tutorials").glob("*.py")]
    for path in files:
        for group in re.findall(r":?cite:[pt]:?`([^`]+)`|\{cite:[pt]\}`([^`]+)`", path.read_text()):
            for text in group:
                keys.update(k.strip() for k in text.split(",") if k.strip())
    return keys


def test_every_cited_key_is_in_the_bibliography():
    bib = (DOCS / "references.bib").read_text()
    defined = set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", bib))
    missing = sorted(_cited_keys() - defined)
    assert not missing, f"add BibTeX entries for {missing} to docs/references.bib"
