"""The fused kernel's two builds: at install (setup.py, used while the source is unchanged) and
the fallback compiled on first use into a folder keyed by source, flags, torch and interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rnnpool_nas.ops import _kernel


def test_the_build_key_names_source_flags_torch_and_python(tmp_path):
    key = _kernel.build_key()
    assert key.startswith("k") and key[1:].isalnum() and len(key) == 17  # an identifier: -DRNNPOOL_BUILD_KEY=
    edited = tmp_path / "fastgrnn.cpp"
    edited.write_bytes(_kernel.SOURCE.read_bytes() + b"\n// an edit\n")
    assert _kernel.build_key(edited) != key


@pytest.mark.slow
def test_the_first_use_build_goes_to_its_keyed_folder(tmp_path):
    """Without the install-time build, the kernel compiles once into EXT_DIR/<key>/ from a copy of
    the source there (so another checkout with the same source shares it) and is used."""
    probe = ("from rnnpool_nas.ops import _kernel; _kernel._installed = lambda key: None; "
             "m = _kernel.load_kernel(); print(_kernel.kernel_status()); print(m.build_key == _kernel.build_key())")
    env = os.environ | {"RNNPOOL_NAS_EXT_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stderr[-1500:]
    status, same = run.stdout.strip().splitlines()[-2:]
    key = _kernel.build_key()
    assert status == f"fused C++ kernel (built on first use in {tmp_path / key})" and same == "True"
    assert (tmp_path / key / "fastgrnn.cpp").read_bytes() == _kernel.SOURCE.read_bytes()
