"""Step times of every optimizer relative to fused AdamW on this machine (GPU where present) -> a JSON record."""

import json
from pathlib import Path

import torch
from bench_step_time import default_preset, measure, report


def main(cfg: dict, threads: int, out: Path, log: Path) -> dict:
    """Measure with the config's sizes and timing, on CUDA when available; the printed table goes to ``log``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(threads)
    preset = default_preset(device) if cfg["preset"] == "auto" else cfg["preset"]
    record = measure(preset, cfg["k"], device, cfg["warmup"], cfg["iters"], cfg["repeats"])
    log.write_text(report(record) + "\n")
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    sm = snakemake
    main(dict(sm.params.cfg), sm.threads, Path(sm.output[0]), Path(sm.log[0]))
