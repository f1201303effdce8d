"""The ``associator`` kind: noun embeddings E_vl × entity embeddings E_vc → association logits."""

from esgkit.core.lazy import lazy_exports

__all__ = ["FCAssociator", "MLPAssociator", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {"FCAssociator": "associators", "MLPAssociator": "associators"})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("associator", "fc", f"{__name__}.associators:FCAssociator",
             "FC(E_vl)·FC(E_vc)ᵀ association logits (paper eq. 16)")
    register("associator", "mlp", f"{__name__}.associators:MLPAssociator",
             "FC+ReLU+FC on each side, then the dot product (Table XXIII)")
