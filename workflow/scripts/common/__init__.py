"""What every experiment's scripts share: paths, provenance and records, reading and writing summaries, LaTeX
formatting, the figures' style, and the statistics the aggregation steps compute."""
