"""The two-task study (sec:experiments): one run per arm and seed, their aggregation, the figure
fig:forgetting_curves and the table tab:forgetting."""
