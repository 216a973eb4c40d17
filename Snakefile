# Rebuild the paper from scratch: `snakemake --cores all` (config -> runs -> records -> figures,
# tables, numbers -> paper/main.pdf). CI and `make test` use --configfile workflow/config/smoke.yaml.

configfile: "workflow/config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/derivations.smk"
include: "workflow/rules/two_task.smk"
include: "workflow/rules/kp_benchmark.smk"
include: "workflow/rules/permuted_mnist.smk"
include: "workflow/rules/step_time.smk"
include: "workflow/rules/language_model.smk"
include: "workflow/rules/paper.smk"


rule all:
    default_target: True
    input:
        rules.paper.output.pdf,
        LANGUAGE_MODEL_DATA,
