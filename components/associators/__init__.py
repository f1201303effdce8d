"""The ``associator`` kind: noun embeddings E_vl × entity embeddings E_vc → association logits."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("associator", "fc", "associators:FCAssociator",
     "FC(E_vl)·FC(E_vc)ᵀ association logits (paper eq. 16)"),
    ("associator", "mlp", "associators:MLPAssociator",
     "FC+ReLU+FC on each side, then the dot product (Table XXIII)"),
])
