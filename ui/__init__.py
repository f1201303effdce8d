"""esgkit ui: the paper's interactive grounding (Fig. 7) as a local web page (``esgkit ui``).

- ``workspace.Workspace`` — models built once and reused, each picture's entities per segmenter,
  results kept for phrase clicks and downloads;
- ``app.create_app`` — the Flask app: the page (``static/``) and its JSON API;
- ``cli`` — the ``esgkit ui`` command (localhost by default).

It sits at the top with experiments: it uses pipelines and datasets, and nothing imports it.
"""

from esgkit.core.lazy import lazy_exports

_EXPORTS = {"Workspace": "workspace", "create_app": "app"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
