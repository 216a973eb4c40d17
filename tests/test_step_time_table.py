"""The cost section's table and sentences follow the step-time records: one column each, GPU verdicts when a
CUDA record exists, and an explicit "not measured" otherwise."""

from __future__ import annotations

import json

from step_time.measure import TARGETS
from step_time.tab_step_time import DENSE_LIMIT, GUARD, gpu_sentence, main, table


def _record(device: str, name: str, guard: float, dense: float) -> dict:
    ratios = {"AdamW (fused, reference)": 1.0, GUARD: guard, DENSE_LIMIT: dense}
    targets = [
        {"row": row, "ratio": ratios[row], "limit": limit, "met": ratios[row] <= limit}
        for row, limit in TARGETS.items()
        if row in ratios
    ]
    return {
        "device": device,
        "device_name": name,
        "preset": "gpt2-124m",
        "n_params": 124_439_808,
        "k": 16,
        "ratios": ratios,
        "targets": targets,
    }


def test_one_column_per_record_and_missing_rows_as_dashes() -> None:
    cpu, gpu = _record("cpu", "CPU (x86_64, 2 threads)", 3.3, 1.2), _record("cuda", "NVIDIA H100 80GB HBM3", 1.2, 1.1)
    del gpu["ratios"]["AdamW (fused, reference)"]
    body = table([cpu, gpu])
    assert r"\begin{tabular}{lrr}" in body and r"CPU (x86\_64, 2 threads) & NVIDIA H100 80GB HBM3 \\" in body
    assert r"AdamW (fused, reference) & 1.00 & -- \\" in body
    assert r"Guard(AdamW fused) layer-wise update & 3.30 & 1.20 \\" in body


def test_gpu_sentence_says_unverified_without_a_cuda_record_and_the_verdicts_with_one() -> None:
    cpu = _record("cpu", "CPU", 3.3, 1.2)
    assert "No GPU measurement is recorded yet" in gpu_sentence([cpu])
    sentence = gpu_sentence([cpu, _record("cuda", "NVIDIA H100", 1.2, 1.4)])
    assert sentence.startswith("On NVIDIA H100") and "1.20$\\times$ (target 1.3$\\times$, met)" in sentence
    assert "1.40$\\times$ (target 1.25$\\times$, not met)" in sentence and "No GPU" not in sentence


def test_main_writes_macros_that_name_their_sources(tmp_path) -> None:
    local, other = tmp_path / "local.json", tmp_path / "h100.json"
    local.write_text(json.dumps(_record("cpu", "CPU", 3.3, 1.2)))
    other.write_text(json.dumps(_record("cuda", "NVIDIA H100", 1.2, 1.1)))
    main(local, [other], tmp_path / "tab.tex", tmp_path / "numbers.tex")
    numbers = (tmp_path / "numbers.tex").read_text().splitlines()[1:]
    assert all(line.startswith("\\newcommand{\\StepTime") and f"% from {local}" in line for line in numbers)
    assert any("StepTimeGpuSentence" in line and str(other) in line and "On NVIDIA H100" in line for line in numbers)
    assert "\\newcommand{\\StepTimeLocalGuard}{3.30}" in "\n".join(numbers)


def test_a_preset_note_travels_into_the_machine_description() -> None:
    from step_time.tab_step_time import machine

    record = _record("cuda", "Small GPU", 1.2, 1.1)
    assert "did not fit" not in machine(record)
    record["preset_note"] = "gpt2-124m did not fit in this GPU's memory; cpu-small measured instead"
    assert machine(record).endswith("gpt2-124m did not fit in this GPU's memory; cpu-small measured instead")


def test_a_cuda_record_names_its_layerwise_path_and_compares_it_with_per_layer_blas() -> None:
    from step_time.tab_step_time import GROUPED, PER_LAYER

    record = _record("cuda", "NVIDIA H100", 1.2, 1.1)
    assert "per-layer BLAS calls" not in gpu_sentence([record])  # an older record, without the rows: no clause
    record["layerwise_backend"] = "triton (grouped kernel)"
    record["dense_backend"] = "triton (grouped kernels)"
    record["ratios"] |= {GROUPED: 0.66, PER_LAYER: 2.64}
    sentence = gpu_sentence([record])
    assert "layer-wise memory by triton (grouped kernel), dense memory by triton (grouped kernels)" in sentence
    assert "in 0.25 of the time of per-layer BLAS calls (0.66$\\times$ against 2.64$\\times$ fused AdamW)" in sentence
    record["layerwise_backend"] = "torch (per-layer BLAS)"  # both rows took the same path: nothing to compare
    assert "of the time of" not in gpu_sentence([record])


def test_each_column_names_its_code_and_the_fused_rows_say_where_they_were_timed() -> None:
    from step_time.tab_step_time import FUSED, fused_sentence, machine

    cpu, gpu = _record("cpu", "CPU", 3.3, 1.2), _record("cuda", "NVIDIA H100", 1.2, 1.1)
    gpu["provenance"] = {"code_commit": "5989460e2f6d", "created_utc": "2026-11-23T08:26:38+00:00"}
    assert "code of commit 5989460 (2026-11-23)" in machine(gpu) and "commit" not in machine(cpu)
    assert fused_sentence([cpu, gpu]).startswith("No column of the table has its rows yet")
    gpu["ratios"][FUSED] = 1.1
    assert fused_sentence([cpu, gpu]).startswith("Its rows are timed on NVIDIA H100")


def test_a_record_without_its_bandwidth_gets_the_copy_caveat() -> None:
    gpu = _record("cuda", "NVIDIA H100", 1.2, 1.1)
    assert "may read low" in gpu_sentence([gpu])
    gpu["bandwidth"] = {"bytes_per_s": 3e12, "source": "measured"}
    assert "may read low" not in gpu_sentence([gpu])


def test_a_gpu_record_without_the_grouped_check_gets_the_host_caveat() -> None:
    gpu, cpu = _record("cuda", "NVIDIA H100", 1.2, 1.1), _record("cpu", "CPU", 3.0, 1.5)
    assert "predates the finite check's grouped kernel" in gpu_sentence([cpu, gpu])
    gpu["finite_check"] = "triton (grouped kernel)"
    assert "predates" not in gpu_sentence([cpu, gpu])


def test_the_abstract_cites_the_one_launch_step_only_where_a_gpu_timed_it() -> None:
    from step_time.tab_step_time import FUSED, FUSED_UNCHECKED, abstract_sentence

    gpu, cpu = _record("cuda", "NVIDIA H100", 1.2, 1.1), _record("cpu", "CPU", 3.0, 1.5)
    assert abstract_sentence([cpu, gpu]) == ""
    cpu["ratios"] |= {FUSED: 5.0, FUSED_UNCHECKED: 4.0}  # a CPU's rows say nothing about the GPU target
    assert abstract_sentence([cpu, gpu]) == ""
    gpu["ratios"] |= {FUSED: 1.5, FUSED_UNCHECKED: 1.13}
    sentence = abstract_sentence([cpu, gpu])
    assert "NVIDIA H100" in sentence and "takes 1.13 times the step of fused AdamW, and 1.50 times" in sentence


def test_a_noisy_record_says_so() -> None:
    from step_time.tab_step_time import noise_clause

    gpu = _record("cuda", "NVIDIA H100", 1.2, 1.1)
    gpu["timing"] = {"reference_spread": 0.03, "noisy": False}
    assert noise_clause(gpu) == "" and "noisy" not in gpu_sentence([gpu])
    gpu["timing"] = {"reference_spread": 0.4, "noisy": True}
    assert "Fused AdamW's own rounds spread by 40\\% of their median in that run, so its ratios are noisy." in (
        gpu_sentence([gpu])
    )
    assert "%" not in noise_clause(gpu).replace("\\%", "")  # TeX reads a bare % as a comment


def test_rows_that_failed_are_named_and_a_missing_dense_row_does_not_stop_the_numbers(tmp_path) -> None:
    """A row that failed its first step (the benchmark goes on without it) is named in the sentences; a local
    record without the dense rows still gives every macro ("--" where the number is missing)."""
    from step_time.tab_step_time import numbers

    gpu = _record("cuda", "NVIDIA H100 80GB HBM3", 1.2, 1.1) | {"failed_rows": {GUARD: "RuntimeError: boom"}}
    assert "1 row(s) failed their first step there and are not in the table: Guard(AdamW fused)" in gpu_sentence([gpu])
    local = _record("cpu", "CPU", 3.3, 1.2) | {"failed_rows": {DENSE_LIMIT: "RuntimeError: boom"}}
    del local["ratios"][DENSE_LIMIT]
    local["targets"] = [t for t in local["targets"] if t["row"] != DENSE_LIMIT]
    lines = "\n".join(numbers(local, [], ["results/step_time/local.json"]))
    assert "\\newcommand{\\StepTimeLocalDenseLimit}{--}" in lines
    assert "(target 1.3$\\times$, not met). 1 row(s) failed" in lines
