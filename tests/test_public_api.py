"""Every package's public API (``__all__``) is a contract: changing it must be deliberate. Update
EXPECTED here, and docs/plugins.md when ``esgkit.core`` changes."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import esgkit

EXPECTED = {
    "esgkit": {"__version__"},
    "esgkit.components": set(),
    "esgkit.components.associators": {"FCAssociator", "MLPAssociator", "register_builtins"},
    "esgkit.components.colorizers": {"LocationColorizer", "RandomColorizer", "register_builtins"},
    "esgkit.components.decoders": {"MaskAttentionMaskDecoder", "Mask2FormerMaskDecoder", "RoiAlignMaskDecoder",
                                   "register_builtins"},
    "esgkit.components.encoders": set(),
    "esgkit.components.encoders.colormap": {"BinaryMaskPoolEncoder", "MobileNetV2ColormapEncoder", "SwinLargeColormapEncoder", "SwinTinyColormapEncoder", "TimmColormapEncoder", "register_builtins"},
    "esgkit.components.encoders.vision": {"ClipGridEncoder", "ClipVisionEncoder", "LlavaClipVisionEncoder", "register_builtins"},
    "esgkit.components.fusers": {"IdentityFuser", "ResoBlendFuser", "register_builtins"},
    "esgkit.components.llms": {"LlavaLlamaDecoder", "register_builtins"},
    "esgkit.components.referrers": {"CMPCReferrer", "PBRECReferrer", "QRNetReferrer", "register_builtins"},
    "esgkit.components.text_encoders": {"BertTextEncoder", "HashedTextEncoder", "LSTMTextEncoder", "register_builtins"},
    "esgkit.components.llms.llava": {"LanguageForward", "LinearProjector", "LlavaLlamaDecoder", "phrase_means", "smollm2_gguf"},
    "esgkit.components.segmenters": {"CropFormerSegmenter", "FromFilesSegmenter", "GroundTruthSegmenter", "Mask2FormerSegmenter", "SamSegmenter", "register_builtins"},
    "esgkit.components.segmenters.cropformer": set(),
    "esgkit.core": {"Associator", "Caption", "CheckpointError", "Colorizer", "Colormap", "ColormapEncoder", "CompatibilityError", "Component", "ConfigError", "Dataset", "DuplicateComponentError", "EntityMasks", "EsgkitError", "Evaluator", "Executor", "Fuser", "Grounding", "InputError", "LanguageDecoder", "LanguageOutput", "MaskDecoder", "MaskDecoderOutput", "NoConfig", "NounPhrase", "OutputError", "PhraseGrounding", "Pipeline", "PluginError", "Predictions", "Referral", "Referrer", "Registry", "RegistryError", "Segmenter", "Task", "TextEncoder", "TextFeatures", "UnknownComponentError", "VisionEncoder", "build_pipeline", "get_registry", "hookimpl", "load_config", "load_image", "load_masks", "save_masks"},
    "esgkit.datasets": {"CocoPanopticDataset", "EntitySegDataset", "PNGDataset", "RefCocoDataset", "ShapesWorldDataset", "generate", "register_builtins"},
    "esgkit.evaluation": {"EntityEvaluator", "NounExtractionEvaluator", "PNGEvaluator", "PanopticEvaluator", "RECEvaluator", "RESEvaluator", "evaluate", "register_builtins", "score_predictions"},
    "esgkit.experiments": {"register_builtins"},
    "esgkit.experiments.grid": {"compose", "export_grid", "load_spec", "parse_spec", "run_grid", "write_report"},
    "esgkit.ui": {"Workspace", "create_app"},
    "esgkit.layers": {"MatchCosts", "PyramidBackbone", "build_pyramid_backbone", "draw_entities", "draw_overlay", "hungarian_match", "load_state", "load_weights", "paint", "point_sample", "read_state_dict", "resize_pad", "sample_masks", "weights_path"},
    "esgkit.models": set(),
    "esgkit.pipelines": {"ColormapPipeline", "GellaPipeline", "ReferringPipeline", "register_builtins"},
    "esgkit.pipelines.gella": {"GellaPipeline", "profile_config"},
    "esgkit.pipelines.referring": {"ReferringModel", "ReferringPipeline", "ReferringResult", "profile_referring"},
    "esgkit.training": {"SetCriterion", "SetCriterionConfig", "ShardedBatches", "TrainConfig", "Trainer", "TrainingTask", "association_loss", "dice_loss", "entityness_loss", "load_checkpoint", "make_task", "mask_losses", "plot_metrics", "read_metrics", "save_checkpoint", "seed_everything", "sigmoid_bce_loss", "split_train_section", "train"},
    "esgkit.training.tasks": {"CropFormerTask", "GellaTask", "ReferringJointTask", "ReferringMaskTask", "ReferringTask", "SamTask",
                              "register_builtins"},
}
PACKAGES = sorted(["esgkit", *(m.name for m in pkgutil.walk_packages(esgkit.__path__, "esgkit.") if m.ispkg)])


def test_every_package_is_listed():
    assert set(PACKAGES) == set(EXPECTED), "a package was added or removed: list its __all__ in EXPECTED"


@pytest.mark.parametrize("package", PACKAGES)
def test_public_api_does_not_drift(package):
    module = importlib.import_module(package)
    assert set(module.__all__) == EXPECTED[package], f"{package}.__all__ changed: update EXPECTED if deliberate"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name} does not resolve"


def test_every_hookspec_is_documented_and_listed():
    from esgkit.core import hookspecs

    hooks = [n for n in dir(hookspecs) if n.startswith("esgkit_")]
    assert hooks == ["esgkit_config_dirs", "esgkit_register_commands", "esgkit_register_components"]
    for name in hooks:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__) > 80 and name in hookspecs.__all__


@pytest.mark.parametrize("package", ["esgkit.core", "esgkit.training", "esgkit.layers", "esgkit.components.segmenters",
                                     "esgkit.pipelines", "esgkit.evaluation"])
def test_importing_a_package_imports_no_heavy_library(package):
    code = (f"import sys, {package}; heavy = {{'torch', 'numpy', 'omegaconf'}} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
