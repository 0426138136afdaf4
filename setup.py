"""Build-time steps that pyproject.toml cannot declare.

1. The fused FastGRNN kernel (``rnnpool_nas/ops/csrc/fastgrnn.cpp``) is compiled with torch's
   ``BuildExtension`` when torch is importable in the build (``make install`` and the wheel build
   use ``--no-build-isolation`` with the locked torch installed). Without torch the package builds
   without it and compiles the kernel on first use instead (``rnnpool_nas/ops/_kernel.py``).
2. The built-in search spaces and device profiles (the top-level ``search_spaces/`` and
   ``constraints/``, the editable source of truth) are copied into the package as
   ``rnnpool_nas/_data/``, so an installed wheel finds them (``rnnpool_nas.resources``).
"""

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
SHIPPED = {"search_spaces": ("*.yaml", "README.md"), "constraints": ("*.yaml",)}


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        for folder, patterns in SHIPPED.items():
            target = Path(self.build_lib) / "rnnpool_nas" / "_data" / folder
            target.mkdir(parents=True, exist_ok=True)
            for pattern in patterns:
                for path in sorted((ROOT / folder).glob(pattern)):
                    shutil.copy2(path, target / path.name)


def _extension():
    try:
        import torch  # noqa: F401
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print("rnnpool-nas: torch is not importable in this build; the FastGRNN kernel will be "
              "compiled on first use", file=sys.stderr)
        return [], {}
    import importlib.util

    spec = importlib.util.spec_from_file_location("_kernel_flags", ROOT / "rnnpool_nas" / "ops" / "_kernel.py")
    flags = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flags)
    key = flags.build_key(flags.SOURCE)
    ext = CppExtension("rnnpool_nas.ops._fastgrnn_ext", ["rnnpool_nas/ops/csrc/fastgrnn.cpp"],
                       extra_compile_args=[*flags.CFLAGS, f"-DRNNPOOL_BUILD_KEY={key}"],
                       extra_link_args=list(flags.LDFLAGS))
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extension()
setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPyWithData, **cmdclass})
