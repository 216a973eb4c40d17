# The paper: the table of the SymPy certificates (app:certificates), the table equation -> function
# (app:equations, read from the library's docstrings), the in-text numbers of numbers.tex (the
# two-task study's and the certificates' counts), then latexmk -> paper/main.pdf, with fixed timestamps
# (SOURCE_DATE_EPOCH) so two builds are identical. Auxiliary files go to results/paper/, so paper/ keeps only
# sources and the PDF. Included last: every other stage has added what the paper needs to PAPER_INPUTS.


rule tab_sympy_certificates:
    input:
        certificates=expand(rules.derivation.output.certificate, name=DERIVATIONS),
        code=code("paper/tab_sympy_certificates.py"),
    output:
        "paper/generated/tab_sympy_certificates.tex",
    log:
        "results/logs/tables/tab_sympy_certificates.log",
    conda:
        ENV
    script:
        "../scripts/paper/tab_sympy_certificates.py"


rule numbers:
    input:
        two_task=rules.two_task_aggregate.output[0],
        certificates=expand(rules.derivation.output.certificate, name=DERIVATIONS),
        code=code("paper/paper_numbers.py"),
    output:
        "paper/generated/numbers.tex",
    params:
        labels=config["two_task"]["labels"],
        allow_missing=config["paper"]["allow_missing_numbers"],
    log:
        "results/logs/tables/numbers.log",
    conda:
        ENV
    script:
        "../scripts/paper/paper_numbers.py"


rule tab_equations:
    input:
        library=sorted(str(p) for p in Path("kaplinskiy").rglob("*.py")),  # read as text: the docstrings
        code=code("paper/tab_equations.py"),
    output:
        "paper/generated/tab_equations.tex",
    log:
        "results/logs/tables/tab_equations.log",
    conda:
        ENV
    script:
        "../scripts/paper/tab_equations.py"


PAPER_INPUTS += [*rules.tab_sympy_certificates.output, *rules.numbers.output, *rules.tab_equations.output]


rule paper:
    input:
        tex="paper/main.tex",
        sections=sorted(str(p) for p in Path("paper/sections").glob("*.tex")),
        bib="paper/refs.bib",
        generated=PAPER_INPUTS,
    output:
        pdf="paper/main.pdf",
    params:
        epoch=config["paper"]["source_date_epoch"],
        outdir="results/paper",
    log:
        "results/logs/paper/latexmk.log",
    conda:
        ENV
    shell:
        "export SOURCE_DATE_EPOCH={params.epoch} FORCE_SOURCE_DATE=1; "
        "latexmk -pdf -interaction=nonstopmode -halt-on-error -outdir=$PWD/{params.outdir} "
        "-cd paper/main.tex > {log} 2>&1 || (tail -40 {log} >&2; exit 1); "
        "cp {params.outdir}/main.pdf {output.pdf}"
