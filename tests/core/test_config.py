"""Configs: defaults chains, interpolation, overrides, typed validation with full keys, safety."""

import pytest

from esgkit.core import ConfigError, build_pipeline, get_registry, load_config


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_interpolation_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "pipeline: {name: colormap}\nsegmenter: {name: ground_truth}\n"
                                  "colorizer: {name: random, seed: 1}\nseed: 5\n")
    cfg = write(tmp_path / "child.yaml", "defaults: [base.yaml]\ncolorizer: {seed: '${seed}'}\n")
    loaded = load_config(cfg, ["seed=7"])
    assert loaded.colorizer.name == "random" and loaded.colorizer.seed == 7
    assert "defaults" not in loaded


def test_shipped_config_by_name():
    assert load_config("colormap").pipeline.name == "colormap"
    with pytest.raises(ConfigError, match="not found .*shipped configs: .*colormap"):
        load_config("no_such_config")


def test_unknown_key_and_wrong_type_name_full_key():
    reg = get_registry()
    with pytest.raises(ConfigError, match=r"colorizer\.sede: unknown key\. Did you mean 'seed'\?") as err:
        reg.validated("colorizer", {"name": "random", "sede": 3}, "colorizer")
    assert err.value.key == "colorizer.sede"
    with pytest.raises(ConfigError) as err:
        reg.validated("colorizer", {"name": "random", "seed": "many"}, "colorizer")
    assert err.value.key == "colorizer.seed"
    name, config = reg.validated("colorizer", {"name": "random", "seed": "4"}, "colorizer")
    assert name == "random" and config.seed == 4


def test_missing_name_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match=r"colorizer\.name: missing 'name'"):
        get_registry().validated("colorizer", {"seed": 1}, "colorizer")
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config("colormap", ["segmenter.name"])


def test_pipeline_rejects_unknown_sections_and_missing_slots(tmp_path):
    with pytest.raises(ConfigError, match=r"segmentor: not a slot of pipeline 'colormap'"):
        build_pipeline(load_config("colormap", ["segmentor.name=x"]))
    cfg = write(tmp_path / "c.yaml", "pipeline: {name: colormap}\nsegmenter: {name: ground_truth}\n")
    with pytest.raises(ConfigError, match="colorizer: pipeline 'colormap' needs a colorizer"):
        build_pipeline(str(cfg))


def test_a_prebuilt_component_stands_in_for_its_validated_section():
    config = load_config("colormap")
    given = get_registry().build("segmenter", {"name": "ground_truth"})
    assert build_pipeline(config, prebuilt={"segmenter": given}).segmenter is given
    with pytest.raises(ConfigError, match=r"prebuilt components \['segmentor'\] fill no slot"):
        build_pipeline(config, prebuilt={"segmentor": given})
    with pytest.raises(ConfigError, match="segmenter.nmae"):  # the section it replaces is still checked
        build_pipeline(load_config("colormap", ["segmenter.nmae=x"]), prebuilt={"segmenter": given})


def test_configs_execute_nothing(tmp_path):
    cfg = write(tmp_path / "evil.yaml", "pipeline: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not a valid YAML config"):
        load_config(cfg)
    assert not (tmp_path / "pwned").exists()


def test_defaults_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "defaults: [b.yaml]\n")
    write(tmp_path / "b.yaml", "defaults: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_swapping_a_component_name_drops_the_old_options(tmp_path):
    base = write(tmp_path / "base.yaml", "pipeline: {name: colormap}\nsegmenter: {name: from_files, path: /x}\n"
                                         "colorizer: {name: random, seed: 1}\n")
    cfg = load_config(base, ["segmenter.name=ground_truth"])
    assert dict(cfg.segmenter) == {"name": "ground_truth"}
    cfg = load_config(base, ["colorizer.seed=9"])  # same name: options merge
    assert cfg.colorizer.seed == 9 and cfg.colorizer.name == "random"
    child = write(tmp_path / "child.yaml", "defaults: [base.yaml]\ncolorizer: {name: location, saturation: 0.5}\n")
    assert dict(load_config(child).colorizer) == {"name": "location", "saturation": 0.5}
