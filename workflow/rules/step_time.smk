# The cost of a guarded step: step times relative to fused AdamW on this machine (GPU where present), plus the
# committed records of other machines (config step_time.records) -> the table and sentences of paper/sections/cost.tex.


# The library, whose speed is measured: every module of it (a change in any measures again), as the record's
# source digest covers them all.
STEP_TIME_LIBRARY = sorted(str(p) for p in Path("kaplinskiy").rglob("*.py"))


rule step_time_local:
    input:
        library=STEP_TIME_LIBRARY,
        code=[
            "workflow/scripts/bench_step_time.py",
            "workflow/scripts/step_time_rows.py",
            "workflow/scripts/provenance.py",
            "workflow/scripts/paths.py",
        ],
    output:
        "results/step_time/local.json",
    params:
        cfg={k: v for k, v in config["step_time"].items() if k != "records"},
    log:
        "results/logs/step_time/local.log",
    threads: workflow.cores  # alone on the machine: timings of concurrent jobs would disturb each other
    conda:
        ENV
    script:
        "../scripts/run_step_time.py"


rule tab_step_time:
    input:
        local=rules.step_time_local.output[0],
        records=config["step_time"]["records"],
        code=["workflow/scripts/latex_format.py"],
    output:
        table="paper/generated/tab_step_time.tex",
        numbers="paper/generated/numbers_step_time.tex",
    log:
        "results/logs/tables/tab_step_time.log",
    conda:
        ENV
    script:
        "../scripts/tab_step_time.py"


PAPER_INPUTS += [*rules.tab_step_time.output]
