"""Builds the chimeraforge Python package with CMake, for `pip install .` and `pip wheel .`.

The package is the pybind11 module chimeraforge._native (python/src) and the pure-Python files
around it (python/chimeraforge). CMake builds the module and lays the package out; this file
copies that layout into the wheel. The version is project(VERSION) in CMakeLists.txt.

Environment:
  CHIMERA_BUILD_DIR   a CMake build tree to build in (default: build-python/ in this folder);
                      an already configured tree is reused as it is, so pointing this at the
                      tree you build the rest with costs only what is out of date.
  CHIMERA_CMAKE_ARGS  extra arguments for a first configure (e.g. -DCHIMERA_PORTABLE=ON).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def project_version() -> str:
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    m = re.search(r"project\(\s*chimeraforge\s+VERSION\s+([0-9]+(?:\.[0-9]+)*)", text)
    if not m:
        sys.exit("setup.py: no project(chimeraforge VERSION x.y.z) in CMakeLists.txt")
    return m.group(1)


class BinaryDistribution(Distribution):
    """The wheel holds a compiled module: tag it for this platform and interpreter."""

    def has_ext_modules(self):
        return True


def run(cmd: "list[str]") -> None:
    print("setup.py: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


class BuildWithCMake(build_ext):
    """Runs in place of build_ext (which setuptools runs because the wheel has a compiled module:
    BinaryDistribution); the module and the package around it come from CMake."""

    def run(self):
        build_dir = Path(os.environ.get("CHIMERA_BUILD_DIR") or ROOT / "build-python").resolve()
        if not (build_dir / "CMakeCache.txt").exists():
            cmd = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                   f"-DPYTHON_EXECUTABLE={sys.executable}", "-DCHIMERA_BUILD_TESTS=OFF",
                   "-DCHIMERA_PYTHON_USER_PTH=OFF"]
            if shutil.which("ninja"):
                cmd += ["-G", "Ninja"]
            cmd += shlex.split(os.environ.get("CHIMERA_CMAKE_ARGS", ""))
            run(cmd)
        run(["cmake", "--build", str(build_dir), "--target", "chimeraforge_native",
             "--parallel", str(os.cpu_count() or 2)])
        # The python component is exactly the package; install it aside and take it from there.
        with tempfile.TemporaryDirectory(prefix="chimeraforge-wheel-") as staging:
            run(["cmake", "--install", str(build_dir), "--component", "python",
                 "--prefix", staging])
            found = sorted(Path(staging).rglob("chimeraforge/__init__.py"))
            if not found:
                sys.exit(f"setup.py: the python component of {build_dir} installed no package "
                         "(was the module skipped at configure time? see its CMake output)")
            target = Path(self.build_lib) / "chimeraforge"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(found[0].parent, target)


# setuptools' own scratch folders (default build/ and ./*.egg-info) go beside the CMake tree, out
# of the source tree and out of build/, which is a CMake tree of its own.
SCRATCH = ROOT / "build-python" / "setuptools"
SCRATCH.mkdir(parents=True, exist_ok=True)

setup(
    version=project_version(),
    options={"build": {"build_base": str(SCRATCH)}, "egg_info": {"egg_base": str(SCRATCH)}},
    packages=[],
    distclass=BinaryDistribution,
    cmdclass={"build_ext": BuildWithCMake},
    zip_safe=False,
)
