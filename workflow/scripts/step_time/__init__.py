"""The cost of a guarded step (sec:cost): the benchmark's rows and measurement, the rule that measures this
machine, and the table that adds the committed records of other machines."""
