"""Permuted MNIST (sec:optimizers): the data, one cell per optimizer, guard and seed (rates, then the potential's
strengths, then the rates again at the selected strength), their aggregations, figures, tables and numbers."""
