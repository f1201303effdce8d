"""`esgkit train` finds a config's task through the registry: train.task, else the pipeline's name,
else the segmenter's; a third party's task registers like any component."""

from dataclasses import dataclass

import pytest

from esgkit.core import ConfigError, Registry, hookimpl
from esgkit.training import run


def test_task_name_rule():
    assert run.task_name({"pipeline": {"name": "gella"}, "segmenter": {"name": "cropformer"}}) == "gella"
    assert run.task_name({"pipeline": {"name": "colormap"}, "segmenter": {"name": "sam"}}) == "sam"
    assert run.task_name({"pipeline": "colormap", "segmenter": "mask2former"}) == "mask2former"
    assert run.task_name({"pipeline": {"name": "gella"}, "train": {"task": "mine"}}) == "mine"
    with pytest.raises(ConfigError, match="train.task: no training task for pipeline 'colormap' with segmenter "
                                          "'ground_truth'; registered tasks: cropformer, gella"):
        run.task_name({"pipeline": {"name": "colormap"}, "segmenter": {"name": "ground_truth"}})


def test_a_plugin_task_is_found_and_gets_its_own_train_keys(monkeypatch, tmp_path):
    from esgkit import builtin
    from esgkit.training import TrainingTask

    class MyTask(TrainingTask):
        """A third party's task."""

        @dataclass
        class Config:
            mine: int = 1

        def __init__(self, pipeline_config, data_dir, settings=None):
            self.settings = settings

        def build_model(self):
            raise NotImplementedError

        def train_dataset(self):
            raise NotImplementedError

        def losses(self, model, batch):
            raise NotImplementedError

    class Plugin:
        @staticmethod
        @hookimpl
        def esgkit_register_components(register):
            register("task", "mine", MyTask)

    registry = Registry()
    registry.load_plugins(builtin, entry_points=[type("EP", (), {"name": "p", "load": staticmethod(lambda: Plugin)})()])
    monkeypatch.setattr(run, "get_registry", lambda: registry)
    config = {"pipeline": {"name": "colormap"}, "segmenter": {"name": "ground_truth"},
              "train": {"task": "mine", "mine": 5, "steps": 3}}
    task, train_config = run.make_task(config, tmp_path)
    assert isinstance(task, MyTask) and task.settings.mine == 5 and train_config.steps == 3
    with pytest.raises(ConfigError, match="train.mien: unknown key"):
        run.make_task({**config, "train": {"task": "mine", "mien": 5}}, tmp_path)
