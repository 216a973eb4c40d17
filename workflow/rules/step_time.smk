# The cost of a guarded step (sec:cost): step times relative to fused AdamW on this machine (GPU where present),
# plus the committed records of other machines (config step_time.records) -> the table and sentences of
# paper/sections/cost.tex. The GPU run that makes those records is workflow/gpu_tools/step_time_gpu_run.sh.


rule step_time_local:
    input:
        code=code("step_time/run_step_time.py"),
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
        "../scripts/step_time/run_step_time.py"


rule tab_step_time:
    input:
        local=rules.step_time_local.output[0],
        records=config["step_time"]["records"],
        code=code("step_time/tab_step_time.py"),
    output:
        table="paper/generated/tab_step_time.tex",
        numbers="paper/generated/numbers_step_time.tex",
    log:
        "results/logs/tables/tab_step_time.log",
    conda:
        ENV
    script:
        "../scripts/step_time/tab_step_time.py"


PAPER_INPUTS += [*rules.tab_step_time.output]
