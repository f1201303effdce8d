import subprocess
import sys

import esgkit.training


def test_every_exported_name_resolves_and_is_documented():
    for name in esgkit.training.__all__:
        obj = getattr(esgkit.training, name)
        assert obj.__doc__, f"{name} has no docstring"


def test_importing_the_package_does_not_import_torch():
    code = "import sys, esgkit.training; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
