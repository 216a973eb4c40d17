# Execute every SymPy notebook in derivations/; a failed identity fails the job. The executed copy
# (with outputs) is kept as the rule's notebook log.

DERIVATIONS = sorted(glob_wildcards("derivations/{name}.ipynb").name)


rule derivation:
    input:
        code=lambda w: notebook_code(w.name),  # certify.py, and the library where a notebook checks it
    output:
        certificate="results/derivations/{name}.json",
        tex="paper/generated/eq_{name}.tex",
    log:
        notebook="results/derivations/{name}.executed.ipynb",
    conda:
        ENV
    notebook:
        "../../derivations/{wildcards.name}.ipynb"


rule derivation_macros:
    input:
        expand(rules.derivation.output.tex, name=DERIVATIONS),
    output:
        "paper/generated/derivations.tex",
    log:
        "results/logs/derivations/macros.log",
    conda:
        ENV
    shell:
        "cat {input} > {output} 2> {log}"


PAPER_INPUTS += rules.derivation_macros.output
