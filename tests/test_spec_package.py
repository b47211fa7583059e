"""The spec as a package: its public names, its independence, its documentation."""

import ast
import inspect
import re
from pathlib import Path

import pytest

import spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "spec"
API_MD = Path("/work/shared/API.md")

# The spec table of API.md, for when API.md is not next to the checkout (e.g. in CI).
API_NAMES = {
    "spec.core": "EPS sqrt_nonneg safe_div mse EpsModel",
    "spec.schedule": "VPSchedule linear_betas cosine_betas time_of_index",
    "spec.forward": "q_sample q_posterior_mean_variance",
    "spec.loss": "eps_pred_loss",
    "spec.ddpm": "x0_pred ddpm_step ddpm_sample",
    "spec.ddim": "ddim_step ddim_sample ddim_step_system ddim_prev ddim_timesteps "
    "ddim_step_between ddim_sample_strided",
    "spec.pf_ode": "VPLinearSchedule pf_ode_rhs euler_step pf_ode_sample_euler pf_ode_euler_system",
    "spec.dynamics": "DynamicalSystem DrivenSystem iterate trajectory iterate_with_input "
    "driven_trajectory is_fixed_point",
    "spec.model": "append_time_channel conv2d_same relu EpsConvNetConfig init_params "
    "eps_conv_net eps_residual_conv_net",
    "spec.data": "to_diffusion_range from_diffusion_range noised_sample_from_eps",
    "spec.likelihood": "normal_kl standard_normal_cdf discretized_gaussian_log_likelihood "
    "vlb_terms bits_per_dim",
}
# Names the shared conventions add to spec.model (the FiLM net of the default run).
EXTRA_MODEL_NAMES = (
    "EpsFiLMNetConfig init_film_params eps_film_net silu group_norm linear sinusoidal_embedding"
)

# Names added for prediction targets, timestep grids, zero terminal SNR and guidance (README
# section "Prediction targets, timestep grids, zero terminal SNR and guidance"), by module.
PREDICTION_NAMES = {
    "spec.schedule": "rescale_zero_terminal_snr SPACINGS timestep_grid",
    "spec.loss": "prediction_loss",
    "spec.model": "CondFiLMNetConfig init_cond_film_params cond_film_net",
    "spec.guidance": "guided_output GuidedModel",
    "spec.prediction": "PREDICTIONS Denoiser x0_from_output eps_from_output predict_x0 "
    "predict_eps v_target prediction_target denoise snr min_snr_weight",
}


def api_table() -> dict[str, set[str]]:
    """module → names, parsed from API.md's spec table (else the copy above)."""
    if not API_MD.exists():
        return {m: set(names.split()) for m, names in API_NAMES.items()}
    table: dict[str, set[str]] = {}
    for line in API_MD.read_text().splitlines():
        m = re.match(r"\|\s*`(spec\.\w+)`\s*\|(.*)\|\s*$", line)
        if m:
            cell = re.sub(r"\([^()]*(\([^()]*\)[^()]*)*\)", "", m.group(2))  # drop signatures
            cell = re.sub(r"\[[^\]]*\]", "", cell)  # drop [TorchLean names]
            cell = re.sub(r"→\s*`[^`]*`", "", cell)  # drop return types
            table[m.group(1)] = set(re.findall(r"`([A-Za-z_]\w*)", cell))
    return table


def test_api_table_parser_finds_at_least_the_known_names():
    table = api_table()
    for module, names in API_NAMES.items():
        assert set(names.split()) <= table[module], module


@pytest.mark.parametrize("module", sorted(API_NAMES))
def test_every_api_name_is_in_its_module_and_in_spec_all(module):
    mod = __import__(module, fromlist=["_"])
    for name in api_table()[module]:
        assert hasattr(mod, name), f"{module} lacks {name}"
        assert name in mod.__all__, f"{name} missing from {module}.__all__"
        assert name in spec.__all__, f"{name} missing from spec.__all__"
        assert getattr(spec, name) is getattr(mod, name)


def test_spec_all_is_exactly_the_api_plus_the_film_net():
    expected = set().union(*api_table().values()) | set(EXTRA_MODEL_NAMES.split())
    expected |= {n for names in PREDICTION_NAMES.values() for n in names.split()}
    assert set(spec.__all__) == expected
    assert len(spec.__all__) == len(set(spec.__all__))


def test_module_all_lists_add_up_to_spec_all():
    names = []
    for module in sorted(set(API_NAMES) | set(PREDICTION_NAMES)):
        names += __import__(module, fromlist=["_"]).__all__
    assert sorted(names) == sorted(spec.__all__)


def test_torchlean_names_map_to_public_names():
    for lean, py in spec.TORCHLEAN_NAMES.items():
        assert py in spec.__all__, (lean, py)


@pytest.mark.parametrize("path", sorted(SPEC_DIR.glob("*.py")), ids=lambda p: p.name)
def test_spec_imports_neither_torch_nor_runtime(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        assert not {"torch", "runtime", "conformance"} & set(roots), (
            f"{path.name}: {ast.unparse(node)}"
        )


@pytest.mark.parametrize("name", sorted(spec.__all__))
def test_public_functions_document_formula_and_shapes(name):
    obj = getattr(spec, name)
    if not callable(obj) or name == "EpsModel":
        return
    doc = inspect.getdoc(obj) or ""
    assert "Shapes:" in doc, f"{name}: no Shapes: line"
    assert len(doc.splitlines()) >= 2, f"{name}: docstring too short"


def test_pf_ode_module_records_both_torchlean_divergences():
    doc = spec.pf_ode.__doc__
    assert "pfOdeRhs" in doc and "doubles the score term" in doc
    assert "pfOdeSampleEuler" in doc and "t = 1/n" in doc
