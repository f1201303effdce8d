"""The public API of esgkit.core is a contract with plugin authors: changing it must be deliberate."""

import esgkit.core

EXPECTED = {
    "Associator", "Caption", "CheckpointError", "Colorizer", "Colormap", "ColormapEncoder",
    "CompatibilityError", "Component", "ConfigError", "Dataset", "DuplicateComponentError",
    "EntityMasks", "EsgkitError", "Evaluator", "Executor", "Fuser", "Grounding", "InputError",
    "LanguageDecoder", "LanguageOutput", "MaskDecoder", "MaskDecoderOutput", "NoConfig", "NounPhrase",
    "PhraseGrounding", "Pipeline", "PluginError", "Registry", "RegistryError", "Segmenter",
    "UnknownComponentError", "VisionEncoder", "build_pipeline", "get_registry", "hookimpl",
    "load_config", "load_image", "load_masks", "save_masks",
}


def test_public_api_does_not_drift():
    assert set(esgkit.core.__all__) == EXPECTED, (
        "esgkit.core.__all__ changed: update EXPECTED here *and* docs/plugins.md if that was deliberate"
    )
    for name in esgkit.core.__all__:
        assert getattr(esgkit.core, name) is not None


def test_every_hookspec_is_documented():
    from esgkit.core import hookspecs

    for name in ("esgkit_register_components", "esgkit_register_commands"):
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__) > 80
