"""Table tab:step_time and the cost section's sentences, from step-time records (this machine's and committed ones).

Each record is one column: every optimizer's step time as a ratio to fused AdamW measured in the same run.
The sentences say which targets were measured where, and that the GPU targets stay unverified while no CUDA
record exists.
"""

import json
from pathlib import Path
from typing import Any

from common.latex_format import escape, macro
from common.paths import repository_path

GUARD = "Guard(AdamW fused) layer-wise update"
GUARD_KEPT = "Guard(AdamW fused) layer-wise update, Q^T w kept"
GUARD_UNCHECKED = "Guard(AdamW fused) layer-wise update, Q^T w kept, no finite check"
GUARD_DEVICE = "Guard(AdamW fused) layer-wise update, Q^T w kept, device check"
FUSED = "HybridAdamW(fused) layer-wise update"
FUSED_DEVICE = "HybridAdamW(fused) layer-wise update, device check"
FUSED_UNCHECKED = "HybridAdamW(fused) layer-wise update, no finite check"
DENSE_LIMIT = "dense projection / bandwidth limit 2*k*n*bytes/bw"
GROUPED, PER_LAYER = "layer-wise projection alone", "layer-wise projection alone, per-layer BLAS"
ROW_LABELS = {  # rows whose names hold math; the others are escaped as they are
    GUARD_KEPT: r"Guard(AdamW fused) layer-wise update, $Q^\top w$ kept",
    GUARD_UNCHECKED: r"Guard(AdamW fused) layer-wise update, $Q^\top w$ kept, no finite check",
    GUARD_DEVICE: r"Guard(AdamW fused) layer-wise update, $Q^\top w$ kept, device check",
    DENSE_LIMIT: r"dense projection / its bandwidth limit $2kn\,\mathrm{bytes}/\mathrm{bandwidth}$",
}


def row_label(name: str) -> str:
    """A benchmark row's name in LaTeX."""
    return ROW_LABELS.get(name, escape(name))


def machine(record: dict[str, Any]) -> str:
    """Where a record was measured: the device's name and the model size (and why, if the size was not the
    one asked for)."""
    where = f"{escape(record['device_name'])}, {escape(record['preset'])} ({record['n_params'] / 1e6:.3g}M parameters)"
    if record["device"] == "cuda" and record.get("layerwise_backend"):
        where += f", layer-wise memory by {escape(record['layerwise_backend'])}"
    if record["device"] == "cuda" and record.get("dense_backend"):
        where += f", dense memory by {escape(record['dense_backend'])}"
    prov = record.get("provenance", {})
    commit = prov.get("code_commit") or prov.get("git_commit")
    if commit:  # columns may come from different code: each names its own
        where += f", code of commit {escape(commit[:7])} ({escape(prov.get('created_utc', '')[:10])})"
    note = record.get("preset_note")
    return where if not note else f"{where}; {escape(note)}"


def table(records: list[dict[str, Any]]) -> str:
    """A tabular with one column per record; a row a record lacks prints as --."""
    names: list[str] = []
    for record in records:
        names += [n for n in record["ratios"] if n not in names]
    devices = " & ".join(["", *(escape(r["device_name"]) for r in records)]) + r" \\"
    models = " & ".join(["", *(f"{escape(r['preset'])}, $k={r['k']}$" for r in records)]) + r" \\"
    lines = [f"\\begin{{tabular}}{{l{'r' * len(records)}}}", r"\toprule", devices, models, r"\midrule"]
    for name in names:
        cells = [f"{r['ratios'][name]:.2f}" if name in r["ratios"] else "--" for r in records]
        lines.append(" & ".join([row_label(name), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def verdicts(record: dict[str, Any]) -> str:
    """The record's targets as one clause each: ``guarded step 3.27x (target 1.3x, not met)``."""
    words = {
        GUARD: "the guarded layer-wise AdamW step",
        GUARD_KEPT: "the same with $Q^\\top w$ kept",
        GUARD_UNCHECKED: "the same without the finite check",
        GUARD_DEVICE: "the same with the check made on the device",
        FUSED: "the same step by HybridAdamW(fused=True), AdamW and projection in one launch",
        FUSED_DEVICE: "that with its check made on the device",
        FUSED_UNCHECKED: "that without its finite check",
        DENSE_LIMIT: "the dense projection against its bandwidth limit",
    }
    parts = []
    for t in record["targets"]:
        state = "met" if t["met"] else "not met"
        parts.append(
            f"{words.get(t['row'], row_label(t['row']))} {t['ratio']:.2f}$\\times$ (target "
            f"{t['limit']:g}$\\times$, {state})"
        )
    return "; ".join(parts)


def failed_clause(record: dict[str, Any]) -> str:
    """The rows a record's run could not step (the benchmark reports them, with their errors, and goes on), as a
    sentence without its full stop, or ``""``."""
    failed = record.get("failed_rows", {})
    if not failed:
        return ""
    names = ", ".join(row_label(name) for name in failed)
    return f"{len(failed)} row(s) failed their first step there and are not in the table: {names}"


def sentence(clause: str) -> str:
    """``clause`` as a sentence that follows another (``" ..."`` with its full stop), or ``""``."""
    return f" {clause}." if clause else ""


def gpu_sentence(records: list[dict[str, Any]]) -> str:
    """What the records say about the GPU targets: measured (where, and met or not) or not measured yet."""
    gpu = [r for r in records if r["device"] == "cuda"]
    if not gpu:
        return (
            "No GPU measurement is recorded yet, so the targets, which are stated for an H100, remain "
            "unverified; the ratios here are from a CPU."
        )
    return " ".join(
        f"On {machine(r)}: {verdicts(r)}.{kernel_clause(r)}{bandwidth_clause(r)}{check_clause(r)}"
        f"{sentence(failed_clause(r))}{sentence(noise_clause(r))}"
        for r in gpu
    )


def bandwidth_clause(record: dict[str, Any]) -> str:
    """A caveat for a record whose dense limit took a copy's bandwidth (records before the read-only probe)."""
    if DENSE_LIMIT not in record["ratios"] or "bandwidth" in record:
        return ""
    return (
        " That record's dense limit took the bandwidth of a copy, which a projection that mostly reads can exceed,"
        " so its dense ratio may read low."
    )


def noise_clause(record: dict[str, Any]) -> str:
    """A caveat for a record whose reference's timing rounds spread beyond the benchmark's noise threshold, as a
    sentence without its full stop, or ``""``."""
    timing = record.get("timing", {})
    if not timing.get("noisy"):
        return ""
    spread = 100 * timing["reference_spread"]
    return f"Fused AdamW's own rounds spread by {spread:.0f}\\% of their median in that run, so its ratios are noisy"


def check_clause(record: dict[str, Any]) -> str:
    """A caveat for a GPU record made before the finite check had its grouped kernel (records without the
    ``finite_check`` field): there its checked rows were bound by the host (workflow/records/step_time/)."""
    if record["device"] != "cuda" or "finite_check" in record:
        return ""
    return (
        " That record predates the finite check's grouped kernel: its rows with the check made it by a multi-tensor"
        " reduction that returns one number per tensor, whose cost to the host, more than the device's pass over the"
        " gradients, bound those steps."
    )


def fused_sentence(records: list[dict[str, Any]]) -> str:
    """Where the one-launch step (HybridAdamW(fused=True)) was timed, or that it was not yet."""
    timed = [r for r in records if FUSED in r["ratios"]]
    if not timed:
        return (
            "No column of the table has its rows yet: the grouped kernel runs only on a GPU with Triton, and it "
            "has not been timed on one."
        )
    return "Its rows are timed on " + "; ".join(machine(r) for r in timed) + "."


def abstract_sentence(records: list[dict[str, Any]]) -> str:
    """The abstract's sentence on the cost: the one-launch projected AdamW step against fused AdamW on the first
    GPU record that timed it without and with the finite check, or ``""`` where none did."""
    timed = [r for r in records if r["device"] == "cuda" and FUSED_UNCHECKED in r["ratios"] and FUSED in r["ratios"]]
    if not timed:
        return ""
    r = timed[0]
    return (
        f" On one {r['device_name']}, the library's projected AdamW step, in one launch, takes "
        f"{r['ratios'][FUSED_UNCHECKED]:.2f} times the step of fused AdamW, and {r['ratios'][FUSED]:.2f} times "
        "with its check that rejects non-finite gradients."
    )


def kernel_clause(record: dict[str, Any]) -> str:
    """How the grouped projection compares with per-layer BLAS calls in the same run, where both were timed
    and they differ (on a CPU both rows take the BLAS path)."""
    ratios = record["ratios"]
    if GROUPED not in ratios or PER_LAYER not in ratios or "triton" not in record.get("layerwise_backend", ""):
        return ""
    return (
        f" There the grouped kernel projects every layer in {ratios[GROUPED] / ratios[PER_LAYER]:.2f} of the time of"
        f" per-layer BLAS calls ({ratios[GROUPED]:.2f}$\\times$ against {ratios[PER_LAYER]:.2f}$\\times$ fused AdamW)."
    )


def numbers(local: dict[str, Any], records: list[dict[str, Any]], sources: list[str]) -> list[str]:
    """The cost section's macros, each naming its source file."""
    src = sources[0]
    ratios = local["ratios"]
    limits = {t["row"]: f"{t['limit']:g}" for t in local["targets"]}
    return [
        macro("StepTimeTargetGuard", limits.get(GUARD, "--"), src),
        macro("StepTimeTargetDense", limits.get(DENSE_LIMIT, "--"), src),
        macro("StepTimeLocalMachine", machine(local), src),
        macro("StepTimeLocalK", str(local["k"]), src),
        macro("StepTimeLocalGuard", f"{ratios[GUARD]:.2f}" if GUARD in ratios else "--", src),
        macro("StepTimeLocalGuardKept", f"{ratios[GUARD_KEPT]:.2f}" if GUARD_KEPT in ratios else "--", src),
        macro("StepTimeLocalDenseLimit", f"{ratios[DENSE_LIMIT]:.2f}" if DENSE_LIMIT in ratios else "--", src),
        macro(
            "StepTimeLocalVerdicts",
            ". ".join(filter(None, [verdicts(local), failed_clause(local), noise_clause(local)])),
            src,
        ),
        macro("StepTimeGpuSentence", gpu_sentence([local, *records]), ", ".join(sources)),
        macro("StepTimeFusedSentence", fused_sentence([local, *records]), ", ".join(sources)),
        macro("StepTimeAbstract", abstract_sentence([local, *records]), ", ".join(sources)),
    ]


def main(local_path: Path, record_paths: list[Path], table_out: Path, numbers_out: Path) -> None:
    local = json.loads(local_path.read_text())
    records = [json.loads(p.read_text()) for p in record_paths]
    sources = [str(local_path), *map(str, record_paths)]
    header = f"% Generated by {repository_path(__file__)} from {', '.join(sources)}\n"
    table_out.write_text(header + table([local, *records]))
    numbers_out.write_text(header + "\n".join(numbers(local, records, sources)) + "\n")


if __name__ == "__main__":
    sm = snakemake
    main(Path(sm.input.local), [Path(p) for p in sm.input.records], Path(sm.output.table), Path(sm.output.numbers))
