"""Associators: noun embeddings × entity embeddings → association logits."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("associator", "fc", "esgkit.components.associators.associators:FCAssociator",
             "FC(E_vl)·FC(E_vc)ᵀ association logits (paper eq. 16)")
    register("associator", "mlp", "esgkit.components.associators.associators:MLPAssociator",
             "FC+ReLU+FC on each side, then the dot product (Table XXIII)")
