"""esgkit: entity segmentation and grounding as a modular plugin framework.

Importing ``esgkit`` installs a guard that makes torchvision importable on machines where its
compiled operators cannot load (a CUDA-only wheel on a CPU-only torch); see
``esgkit.core.torchvision_compat``. It must run before anything imports torchvision, which is why
it lives here, in the top-level package.

The layout, each folder a package that imports only the ones before it: ``core`` (the framework)
← ``layers`` (shared building blocks) ← ``components`` / ``datasets`` ← ``pipelines`` ←
``evaluation`` ← ``training`` ← ``experiments``; ``builtin`` is the built-in plugin, ``models`` the
shipped weights and their cards.
"""

from esgkit.core.torchvision_compat import install_torchvision_guard as _install_torchvision_guard

_install_torchvision_guard()

__version__ = "0.1.0"
__all__ = ["__version__"]
