"""RecursionPolicy: the shape of the scatter/gather tree.

A sweep of 10^6 specs cannot be enqueued by one process, nor gathered by one. The tree splits
the specs ``factor`` ways per level, up to ``max_depth`` levels, so that enqueueing and gathering
are spread over many nodes. Splitting is grid-stride (child i takes rows i, i+factor, ...), which
keeps children the same size and mixes slow and fast regions of a sampled design space.

A policy is a strategy: subclass it (as a frozen attrs class) and override ``fan_out`` to shape
the tree differently. The policy travels by value to every node, on every engine.
"""

from __future__ import annotations

import attrs


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RecursionPolicy.{attribute.name} must be a positive int, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"RecursionPolicy.{attribute.name} must be an int >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RecursionPolicy:
    """Split ``factor`` ways per level, at most ``max_depth`` levels below the root.

    ``max_depth=0`` means the root node dispatches every leaf itself.
    """

    factor: int = attrs.field(default=10, validator=_positive)
    max_depth: int = attrs.field(default=1, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.factor < 2 and self.max_depth > 0:
            raise ValueError("RecursionPolicy.factor must be >= 2 when max_depth > 0")

    def fan_out(self, depth: int, n_specs: int) -> int:
        """How many children a node at ``depth`` holding ``n_specs`` specs splits into.

        0 or 1 means the node does not split: it runs its leaves itself. The tree never makes
        more children than specs. Override this to shape the tree.
        """
        return self.factor if depth < self.max_depth and n_specs > self.factor else 0

    def splits(self, depth: int, n_specs: int) -> bool:
        """Whether a node at ``depth`` holding ``n_specs`` specs splits into children."""
        return min(self.fan_out(depth, n_specs), n_specs) > 1

    def children(self, depth: int, n_specs: int) -> int:
        """The number of children the tree actually makes (0 when the node does not split)."""
        return min(self.fan_out(depth, n_specs), n_specs) if self.splits(depth, n_specs) else 0
