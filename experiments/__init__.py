"""esgkit experiments: ablation grids (to come). It sits above pipelines, training and evaluation
and may use all of them; nothing imports it."""

__all__ = ["register_builtins"]


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (none yet: the grid executors come with the grid engine)."""
