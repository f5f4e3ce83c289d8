"""A precomputed embedding column (a list or fixed-size list of floats per row)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probekit.embedders.base import Embedder
from probekit.errors import ProbekitUsageError

if TYPE_CHECKING:
    from probekit.pool import Pool


def column_matrix(pool: "Pool", field: str) -> np.ndarray:
    """A list-of-numbers column as a [N, d] float32 matrix, without Python loops."""
    import pyarrow as pa

    if field not in pool.columns:
        raise ProbekitUsageError(f"embedding column {field!r} is not in the pool; columns: {', '.join(pool.columns)}.")
    column = pool.dataset.with_format("arrow")[field]
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    typ = column.type
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)):
        raise ProbekitUsageError(
            f"embedding column {field!r} must hold a list of numbers per row; it holds {typ}."
        )
    if column.null_count:
        raise ProbekitUsageError(f"embedding column {field!r} has {column.null_count} missing rows.")
    lengths = pa.compute.list_value_length(column).to_numpy(zero_copy_only=False)
    if lengths.size and (lengths.min() != lengths.max() or lengths[0] == 0):
        raise ProbekitUsageError(
            f"embedding column {field!r} must have one length for every row; "
            f"found lengths {int(lengths.min())} to {int(lengths.max())}."
        )
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(pool), -1)


class ColumnEmbedder(Embedder):
    """Use a precomputed embedding column as it is."""

    name: ClassVar[str] = "column"
    _constraints: ClassVar[dict[str, Any]] = {"field": str}

    def __init__(self, *, field: str = "embedding") -> None:
        self.field = field

    def _embed(self, pool: "Pool") -> np.ndarray:
        return column_matrix(pool, self.field)
