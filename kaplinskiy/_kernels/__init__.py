"""Private: the grouped GPU kernels (Triton), their launch tables and tuning knobs. The ``*_triton.py`` modules are
imported only inside functions, on first launch, so that importing the library never imports Triton. The tuning
knobs for sweeps and benchmarks live here: :func:`~kaplinskiy._kernels.layerwise.set_block_sizes`,
:data:`~kaplinskiy._kernels.layerwise.MAX_RANK` and :func:`~kaplinskiy._kernels.adamw_rows.set_cache_hints`.

May import: torch and :mod:`kaplinskiy._tensor_lists` (Triton lazily); nothing else of the library.
"""
