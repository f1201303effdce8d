"""esgkit experiments."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
