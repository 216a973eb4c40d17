# The language-model study's data (docs/language_model.md), not yet read by the paper: each source's text from a
# pinned package, a byte-level BPE tokenizer trained on the old domain's training split, every corpus as uint16
# token rows split by document, and the protected sample of old-domain training rows. Rule all builds it all.

LM = config["language_model"]
LM_STUDIED = [LM["old_domain"], *LM["new_domains"]]  # split into train, validation, heldout
LM_SOURCES = [*LM_STUDIED, LM["unseen_old_domain"]]
LM_SPLITS = ("train", "validation", "heldout")
LM_TOKENS = "results/language_model/tokens"
LM_CFG = {k: LM[k] for k in ("old_domain", "vocab_size", "sequence_length", "splits", "seed", "max_documents")}


rule language_model_source:
    input:
        code=code("language_model/prepare_source.py"),
    output:
        text="results/language_model/sources/{source}.jsonl",
        meta="results/language_model/sources/{source}.json",
    wildcard_constraints:
        source="|".join(LM_SOURCES),
    params:
        work=lambda w: f"results/language_model/debs/{w.source}",
    log:
        "results/logs/language_model/source_{source}.log",
    conda:
        ENV
    script:
        "../scripts/language_model/prepare_source.py"


rule language_model_tokenizer:
    input:
        text=f"results/language_model/sources/{LM['old_domain']}.jsonl",
        code=code("language_model/train_tokenizer.py"),
    output:
        tokenizer="results/language_model/tokenizer.json",
        meta="results/language_model/tokenizer_meta.json",
    params:
        cfg=LM_CFG,
    log:
        "results/logs/language_model/tokenizer.log",
    conda:
        ENV
    script:
        "../scripts/language_model/train_tokenizer.py"


rule language_model_tokens:
    input:
        text="results/language_model/sources/{source}.jsonl",
        tokenizer=rules.language_model_tokenizer.output.tokenizer,
        code=code("language_model/tokenize_corpus.py"),
    output:
        **{split: f"{LM_TOKENS}/{{source}}/{split}.npy" for split in LM_SPLITS},
        meta=f"{LM_TOKENS}/{{source}}/splits.json",
    wildcard_constraints:
        source="|".join(LM_STUDIED),
    params:
        cfg=LM_CFG,
    log:
        "results/logs/language_model/tokens_{source}.log",
    conda:
        ENV
    script:
        "../scripts/language_model/tokenize_corpus.py"


rule language_model_unseen_tokens:
    input:
        text=f"results/language_model/sources/{LM['unseen_old_domain']}.jsonl",
        tokenizer=rules.language_model_tokenizer.output.tokenizer,
        code=code("language_model/tokenize_corpus.py"),
    output:
        unseen=f"{LM_TOKENS}/{{source}}/unseen.npy",
        meta=f"{LM_TOKENS}/{{source}}/unseen.json",
    wildcard_constraints:
        source=LM["unseen_old_domain"],
    params:
        cfg=LM_CFG,
    log:
        "results/logs/language_model/tokens_{source}_unseen.log",
    conda:
        ENV
    script:
        "../scripts/language_model/tokenize_corpus.py"


rule language_model_protected_sample:
    input:
        train=f"{LM_TOKENS}/{LM['old_domain']}/train.npy",
        meta=f"{LM_TOKENS}/{LM['old_domain']}/splits.json",
        code=code("language_model/protected_sample.py"),
    output:
        sample=f"{LM_TOKENS}/protected.npy",
        meta=f"{LM_TOKENS}/protected.json",
    params:
        rows=LM["protected_sequences"],
        seed=LM["seed"],
    log:
        "results/logs/language_model/protected_sample.log",
    conda:
        ENV
    script:
        "../scripts/language_model/protected_sample.py"


# What rule all builds (the paper reads none of it yet).
LANGUAGE_MODEL_DATA = [
    *expand(f"{LM_TOKENS}/{{source}}/splits.json", source=LM_STUDIED),
    f"{LM_TOKENS}/{LM['unseen_old_domain']}/unseen.json",
    rules.language_model_protected_sample.output.meta,
    rules.language_model_tokenizer.output.meta,
    *expand("results/language_model/sources/{source}.json", source=LM_SOURCES),
]
