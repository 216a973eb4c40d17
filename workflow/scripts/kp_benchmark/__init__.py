"""The Kaplinskii-Propoi benchmark (sec:kp_benchmark): one cell per function, dimension and arm, their
aggregation (profiles' inputs, the target, the defects' counts, the section's claims checked), the figure, the
tables and the in-text numbers."""
