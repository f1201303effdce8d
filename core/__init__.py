"""esgkit.core — the framework: data types, component interfaces, the plugin registry, configs and
pipeline assembly. This is the public API third-party plugins build on; keep it small and stable.

Names are imported on first use (``from esgkit.core import Segmenter`` imports only the interfaces),
so listing components stays fast: NumPy, OmegaConf and torch load only when something needs them.
"""

from .lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("CheckpointError", "CompatibilityError", "ConfigError", "DuplicateComponentError", "EsgkitError",
                     "InputError", "OutputError", "PluginError", "RegistryError", "UnknownComponentError"), "errors"),
    "hookimpl": "hookspecs",
    **dict.fromkeys(("Associator", "Colorizer", "ColormapEncoder", "Component", "Dataset", "Evaluator", "Executor",
                     "Fuser", "LanguageDecoder", "LanguageOutput", "MaskDecoder", "MaskDecoderOutput", "NoConfig",
                     "Pipeline", "Predictions", "Referral", "Referrer", "Segmenter", "Task", "TextEncoder",
                     "TextFeatures", "VisionEncoder"), "interfaces"),
    "load_config": "config",
    **dict.fromkeys(("load_image", "load_masks", "save_masks"), "io"),
    "build_pipeline": "pipeline",
    **dict.fromkeys(("Registry", "get_registry"), "registry"),
    **dict.fromkeys(("Caption", "Colormap", "EntityMasks", "Grounding", "NounPhrase", "PhraseGrounding"), "types"),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
