"""esgkit.core — the framework: data types, component interfaces, the plugin registry, configs and
pipeline assembly. This is the public API third-party plugins build on; keep it small and stable."""

from .errors import (
    CheckpointError,
    CompatibilityError,
    ConfigError,
    DuplicateComponentError,
    EsgkitError,
    InputError,
    PluginError,
    RegistryError,
    UnknownComponentError,
)
from .hookspecs import hookimpl
from .interfaces import (
    Associator,
    Colorizer,
    ColormapEncoder,
    Component,
    Dataset,
    Evaluator,
    Executor,
    Fuser,
    LanguageDecoder,
    LanguageOutput,
    MaskDecoder,
    MaskDecoderOutput,
    NoConfig,
    Pipeline,
    Segmenter,
    VisionEncoder,
)
from .config import load_config
from .io import load_image, load_masks, save_masks
from .pipeline import build_pipeline
from .registry import Registry, get_registry
from .types import Caption, Colormap, EntityMasks, Grounding, NounPhrase, PhraseGrounding

__all__ = [
    "Associator",
    "Caption",
    "CheckpointError",
    "Colorizer",
    "Colormap",
    "ColormapEncoder",
    "CompatibilityError",
    "Component",
    "ConfigError",
    "Dataset",
    "DuplicateComponentError",
    "EntityMasks",
    "EsgkitError",
    "Evaluator",
    "Executor",
    "Fuser",
    "Grounding",
    "InputError",
    "LanguageDecoder",
    "LanguageOutput",
    "MaskDecoder",
    "MaskDecoderOutput",
    "NoConfig",
    "NounPhrase",
    "PhraseGrounding",
    "Pipeline",
    "PluginError",
    "Registry",
    "RegistryError",
    "Segmenter",
    "UnknownComponentError",
    "VisionEncoder",
    "build_pipeline",
    "get_registry",
    "hookimpl",
    "load_config",
    "load_image",
    "load_masks",
    "save_masks",
]
