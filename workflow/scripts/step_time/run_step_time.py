"""Step times of every optimizer relative to fused AdamW on this machine (GPU where present) -> a JSON record."""

import gc
from pathlib import Path

import torch
from common.records import record_json

from step_time.measure import default_preset, measure, report


def main(cfg: dict, threads: int, out: Path, log: Path, device: torch.device | None = None) -> dict:
    """Measure with the config's sizes and timing, on CUDA when available; the printed table goes to ``log``.

    With ``preset: auto`` on a GPU too small for the GPT-2-124M shapes (the memories and a dozen optimizers'
    states, about 40 GB at k = 16), the CPU-sized model is measured on the same GPU instead, and the record
    and the log say so (``preset_note``); an explicit preset that does not fit stops the rule.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(threads)
    preset = default_preset(device) if cfg["preset"] == "auto" else cfg["preset"]
    note = record = None
    try:
        record = measure(preset, cfg["k"], device, cfg["warmup"], cfg["iters"], cfg["repeats"])
    except torch.cuda.OutOfMemoryError:
        if cfg["preset"] != "auto" or preset == "cpu-small":
            raise
        note = f"{preset} did not fit in this GPU's memory; cpu-small measured instead"
    if record is None:  # outside the handler: its traceback no longer holds the first attempt's tensors
        gc.collect()
        torch.cuda.empty_cache()
        record = measure("cpu-small", cfg["k"], device, cfg["warmup"], cfg["iters"], cfg["repeats"])
    record["preset_note"] = note
    log.write_text(report(record) + ("" if note is None else f"\nnote: {note}") + "\n")
    out.write_text(record_json(record))
    return record


if __name__ == "__main__":
    sm = snakemake
    main(dict(sm.params.cfg), sm.threads, Path(sm.output[0]), Path(sm.log[0]))
