"""Which bundle inspects a frame: product names mapped to predictors, kept warm within a budget.

A station that runs several cell formats holds one bundle per product. Each trigger's
``product`` picks the bundle, so a changeover needs no restart. Bundles are loaded once and
kept loaded while their size fits the memory budget; loading one more puts the least
recently used aside (a frame still in flight keeps its predictor until it is done).

Example:
    >>> pool = ProductPool({"pouch-a": "bundles/a", "pouch-b": "bundles/b"}, "onnxruntime")
    ...                                                                  # doctest: +SKIP
    >>> pool.get("pouch-b").model_id                                     # doctest: +SKIP
    'tiny-3abad2ce23a8'
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from inspector.runtime.predictor import Predictor

log = logging.getLogger("inspector.runtime.products")


class UnknownProduct(LookupError):
    """A frame names a product the station has no bundle for (or names none, with no default)."""


def bundle_size_mb(bundle: Path) -> float:
    """The size of a bundle's files on disk in MB: what loading it costs, roughly."""
    return sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 1e6


class ProductPool:
    """Product name -> ``Predictor``, loaded on first use and kept within ``budget_mb``.

    Args:
        bundles: product name (as configured) -> bundle folder.
        backend: the backend name every bundle runs on (None: each recipe's own).
        default: the product of frames that name none; None: such frames are refused.
        budget_mb: loaded bundles' summed size on disk stays within this, except that the
            bundle just asked for is always loaded.
        load: makes a predictor of a bundle folder (tests pass a ready one in).
    """

    def __init__(
        self,
        bundles: Mapping[str, Path],
        backend: str | None = None,
        default: str | None = None,
        budget_mb: float = 4096.0,
        load: Callable[[Path], object] | None = None,
    ) -> None:
        self.bundles = {name: Path(path) for name, path in bundles.items()}
        self.default = default
        self.budget_mb = budget_mb
        self._load = load or (lambda path: _predictor(path, backend))
        self._loaded: collections.OrderedDict[str, tuple[object, float]] = (
            collections.OrderedDict()
        )  # least recently used first
        self._lock = threading.Lock()
        self.loads = 0  # how many times a bundle was loaded: warm pools do not reload

    def preload(self) -> list[str]:
        """Load the bundles that fit the budget, in listed order; returns their products."""
        used = 0.0
        for name, path in self.bundles.items():
            size = bundle_size_mb(path)
            if used and used + size > self.budget_mb:
                log.info("product %s not preloaded: over products.memory_budget_mb", name)
                continue
            self.get(name)
            used += size
        return list(self._loaded)

    def name_of(self, product: str | None) -> str:
        """The configured name for a frame's ``product``; ``UnknownProduct`` if there is none."""
        if product is None:
            if self.default is None:
                raise UnknownProduct(
                    "the frame names no product and products.default is not set"
                    f" (configured: {', '.join(self.bundles)})"
                )
            return self.default
        if product not in self.bundles:
            raise UnknownProduct(
                f"unknown product {product!r} (configured: {', '.join(self.bundles)})"
            )
        return product

    def get(self, product: str | None):
        """The predictor of ``product`` (loading it, and putting others aside, if needed)."""
        name = self.name_of(product)
        with self._lock:  # one load at a time; a warm bundle is a dictionary look-up
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name][0]
            size = bundle_size_mb(self.bundles[name])
            while self._loaded and self.used_mb() + size > self.budget_mb:
                old, _ = self._loaded.popitem(last=False)
                log.info("bundle of product %s put aside to load %s (memory budget)", old, name)
            predictor = self._load(self.bundles[name])
            self.loads += 1
            self._loaded[name] = (predictor, size)
            log.info("bundle of product %s loaded: %s", name, getattr(predictor, "model_id", ""))
            return predictor

    def used_mb(self) -> float:
        """Summed size of the loaded bundles."""
        return sum(size for _, size in self._loaded.values())

    def loaded(self) -> list[str]:
        """Products whose bundle is loaded, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def close(self) -> None:
        """Close every loaded predictor."""
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), collections.OrderedDict()
        for predictor, _ in loaded:
            try:
                predictor.close()
            except Exception:
                log.exception("closing a backend")


def _predictor(bundle: Path, backend: str | None):
    return Predictor(bundle, backend)
