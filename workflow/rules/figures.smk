# One rule per figure: results -> paper/figures/<label>.pdf. Plot only; never train here.


rule fig_forgetting_curves:
    input:
        rules.two_task_aggregate.output,
        code=["workflow/scripts/figure_style.py"],
    output:
        "paper/figures/fig_forgetting_curves.pdf",
    params:
        labels=config["two_task"]["labels"],
    log:
        "results/logs/figures/fig_forgetting_curves.log",
    conda:
        ENV
    script:
        "../scripts/fig_forgetting_curves.py"


PAPER_INPUTS += rules.fig_forgetting_curves.output
