# Execute every SymPy notebook in derivations/; a failed identity fails the job. The executed copy
# (with outputs) is kept as the rule's notebook log.

DERIVATIONS = sorted(glob_wildcards("derivations/{name}.ipynb").name)


rule derivation:
    input:
        helper="derivations/certify.py",
    output:
        certificate="results/derivations/{name}.json",
        tex="paper/generated/eq_{name}.tex",
    log:
        notebook="results/derivations/{name}.executed.ipynb",
    conda:
        ENV
    notebook:
        "../../derivations/{wildcards.name}.ipynb"


PAPER_INPUTS += expand(rules.derivation.output.tex, name=DERIVATIONS)
