"""What the paper itself needs beyond the experiments: the in-text numbers of numbers.tex and the table of the
SymPy certificates (app:certificates)."""
