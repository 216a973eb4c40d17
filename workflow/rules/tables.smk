# Tables -> paper/generated/tab_<label>.tex (tabular bodies); in-text numbers -> paper/generated/numbers.tex.


rule tab_forgetting:
    input:
        rules.two_task_aggregate.output,
        code=["workflow/scripts/latex_format.py"],  # modules the script imports: a change reruns the rule
    output:
        "paper/generated/tab_forgetting.tex",
    params:
        labels=config["two_task"]["labels"],
    log:
        "results/logs/tables/tab_forgetting.log",
    conda:
        ENV
    script:
        "../scripts/tab_forgetting.py"


rule tab_sympy_certificates:
    input:
        expand(rules.derivation.output.certificate, name=DERIVATIONS),
    output:
        "paper/generated/tab_sympy_certificates.tex",
    log:
        "results/logs/tables/tab_sympy_certificates.log",
    conda:
        ENV
    script:
        "../scripts/tab_sympy_certificates.py"


rule numbers:
    input:
        two_task=rules.two_task_aggregate.output[0],
        certificates=expand(rules.derivation.output.certificate, name=DERIVATIONS),
        code=["workflow/scripts/latex_format.py"],
    output:
        "paper/generated/numbers.tex",
    params:
        headline=config["two_task"]["headline"],
        labels=config["two_task"]["labels"],
        allow_missing=config["paper"]["allow_missing_numbers"],
    log:
        "results/logs/tables/numbers.log",
    conda:
        ENV
    script:
        "../scripts/paper_numbers.py"


PAPER_INPUTS += [*rules.tab_forgetting.output, *rules.tab_sympy_certificates.output, *rules.numbers.output]
