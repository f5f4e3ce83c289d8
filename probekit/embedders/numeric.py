"""Numeric columns (scalars and fixed-length lists), each feature standardised."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from probekit.embedders.base import Embedder
from probekit.embedders.column import column_matrix
from probekit.errors import ProbekitUsageError
from probekit.params import AnyOf

if TYPE_CHECKING:
    from probekit.pool import Pool


def numeric_columns(pool: "Pool") -> list[str]:
    """Float columns and list-of-number columns, the id column excluded.

    Integer *scalar* columns are left out of the default: they are almost always
    labels, categories or counts (digits' ``label``), not coordinates. Name them
    in ``columns`` to use them anyway.
    """
    import pyarrow as pa

    names = []
    for name, typ in zip(pool.dataset.features.keys(), pool.dataset.data.schema.types):
        if name == pool.id_field:
            continue
        is_list = pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
        inner = typ.value_type if is_list else typ
        if pa.types.is_floating(inner) or (is_list and pa.types.is_integer(inner)):
            names.append(name)
    return names


class NumericEmbedder(Embedder):
    """Concatenate numeric columns and standardise each feature (zero mean, unit variance).

    Standardising keeps a large-valued column (a count, an age) from deciding
    every distance; constant features are left at zero.
    """

    name: ClassVar[str] = "numeric"
    _constraints: ClassVar[dict[str, Any]] = {"columns": AnyOf(None, list, tuple), "standardize": bool}

    def __init__(self, *, columns: Sequence[str] | None = None, standardize: bool = True) -> None:
        self.columns = columns  # None: every float and list-of-number column
        self.standardize = standardize

    def _embed(self, pool: "Pool") -> np.ndarray:
        import pyarrow as pa

        names = list(self.columns) if self.columns is not None else numeric_columns(pool)
        if not names:
            raise ProbekitUsageError(
                "the pool has no numeric columns to embed; give --embedding-field, --text-field "
                f"or numeric columns (columns: {', '.join(pool.columns)})."
            )
        blocks = []
        for name in names:
            if name not in pool.columns:
                raise ProbekitUsageError(f"numeric column {name!r} is not in the pool; columns: {', '.join(pool.columns)}.")
            typ = pool.dataset.data.schema.field(name).type
            if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
                blocks.append(column_matrix(pool, name).astype(np.float64))
            else:
                values = pool.column(name)
                try:
                    blocks.append(np.asarray(values, dtype=np.float64)[:, None])
                except (TypeError, ValueError):
                    raise ProbekitUsageError(f"column {name!r} is not numeric.") from None
        x = np.concatenate(blocks, axis=1)
        if self.standardize:
            std = x.std(axis=0)
            x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
        return x
