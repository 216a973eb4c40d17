"""The potential's regulariser R and what it is made of: EWC's and L2-SP's anchor (eq:ewc_penalty), the diagonal
Fisher information that weights it (eq:fisher), the replay term (eq:replay), and per-sample gradients.

May import: torch and :mod:`kaplinskiy._tensor_lists`; nothing else of the library.
"""
