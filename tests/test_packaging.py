"""What the build leaves behind: the kernels carry the digest of their sources, and a source
tree whose kernels were never built borrows an installed fastdl's only when they match.
(CI's .ci/wheel builds the sdist, the wheel from it, and runs it where no compiler is.)"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastdl._kernels import runtime
from fastdl._kernels._digest import kernels_digest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = Path(runtime.__file__).parent


def test_the_built_kernels_carry_the_digest_of_these_sources():
    assert runtime.source_digest() == kernels_digest(ROOT / "kernels")


@pytest.fixture
def unbuilt_tree_and_install(tmp_path):
    """A copy of the source tree with no compiled kernels, and a fake installed fastdl
    (a dist-info and the compiled modules of this build) in a site folder after it."""
    tree, site = tmp_path / "tree", tmp_path / "site"
    shutil.copytree(ROOT / "fastdl", tree / "fastdl",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    shutil.copytree(ROOT / "kernels", tree / "kernels", ignore=shutil.ignore_patterns("*.c"))
    (site / "fastdl" / "_kernels").mkdir(parents=True)
    for module in KERNELS.iterdir():
        if module.suffix in (".so", ".pyd"):
            shutil.copy(module, site / "fastdl" / "_kernels")
    (site / "fastdl-0.1.0.dist-info").mkdir()
    (site / "fastdl-0.1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fastdl\nVersion: 0.1.0\n")
    return tree, site


def _run(tree, site, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(site)])}
    return subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True)


def test_an_unbuilt_tree_borrows_the_installed_kernels_built_from_the_same_sources(unbuilt_tree_and_install):
    tree, site = unbuilt_tree_and_install
    code = "import fastdl, fastdl._kernels.conv as c; print(fastdl.__file__); print(c.__file__)"
    out = _run(tree, site, "-c", code)
    assert out.returncode == 0, out.stderr
    package, kernels = out.stdout.split()
    assert package.startswith(str(tree)) and kernels.startswith(str(site))


def test_kernels_built_from_other_sources_are_refused_in_one_line(unbuilt_tree_and_install):
    tree, site = unbuilt_tree_and_install
    with open(tree / "kernels" / "simd.h", "a") as f:
        f.write("/* an edit since the install */\n")
    out = _run(tree, site, "-m", "fastdl", "train", "--epochs", "1")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert f"compiled kernels are not built in {tree}" in out.stderr and "pip install -e ." in out.stderr
