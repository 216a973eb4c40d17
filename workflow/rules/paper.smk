# latexmk -> paper/main.pdf, with fixed timestamps (SOURCE_DATE_EPOCH) so two builds are identical.
# Auxiliary files go to results/paper/, so paper/ keeps only sources and the PDF.


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
