"""Build hook: compile the message catalogues (.po -> .mo) whenever the package is built.

Everything else about the package is in pyproject.toml. A normal build writes the .mo files into
the build directory (so they are in the wheel); an editable install (`pip install -e .`) writes
them next to the .po files in the source tree, where the editable import finds them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
LOCALE = Path("messages") / "locale"


def _compile_tree(source: Path, target: Path) -> list[Path]:
    # Loaded by path: importing the `messages` package would need the project installed.
    path = ROOT / "messages" / "compile.py"
    spec = importlib.util.spec_from_file_location("_engage_compile", path)
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load messages/compile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written: list[Path] = module.compile_tree(source, target)
    return written


class BuildWithCatalogues(build_py):
    """build_py that also compiles every catalogue; a broken .po fails the build."""

    def run(self) -> None:
        super().run()  # in editable mode this copies nothing
        target = ROOT / LOCALE if self.editable_mode else Path(self.build_lib) / LOCALE
        for mo in _compile_tree(ROOT / LOCALE, target):
            self.announce(f"compiled {mo}", level=2)


setup(cmdclass={"build_py": BuildWithCatalogues})
