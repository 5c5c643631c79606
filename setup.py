"""Only what pyproject.toml cannot say: a wheel carries the CUDA sources (`kernels/`) and the
bundled voices and phrases (`resources/`) inside the package, as `tts_desktop/kernels/` and
`tts_desktop/resources/`, where `tts_desktop.engine.compile` and `tts_desktop.assets` look first.
In a checkout (and an editable install) both stay at the repository root, as the design has them,
so setuptools' package-data, which only takes files below a package, cannot copy them."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ASSETS = {"kernels": ("*.cu", "*.cuh"), "resources": ("**/*",)}


class BuildPyWithAssets(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # the checkout's own folders serve
            return
        package = Path(self.build_lib) / "tts_desktop"
        for folder, patterns in ASSETS.items():
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    if src.is_file() and not any(part.startswith(".") for part in src.relative_to(ROOT).parts):
                        dest = package / src.relative_to(ROOT)
                        self.mkpath(str(dest.parent))
                        self.copy_file(str(src), str(dest), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithAssets})
