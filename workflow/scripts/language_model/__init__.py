"""The language-model study's data (docs/language_model.md): each source's text from a pinned package, a byte-level
BPE tokenizer trained on the old domain's training text, token arrays split by document, the protected sample."""
