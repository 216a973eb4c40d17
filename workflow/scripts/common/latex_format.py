"""Number and macro formatting shared by the table and number scripts (one place, so they always agree)."""

import math

DIGITS = dict(
    zip("0123456789", ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"), strict=True)
)


def fmt(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, in siunitx-free plain LaTeX (``1.2\\times10^{-3}``)."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else r"\text{n/a}"
    exponent = math.floor(math.log10(abs(x)))
    if -3 <= exponent < 4:
        return f"{x:.{max(digits - 1 - exponent, 0)}f}"
    mantissa = x / 10**exponent
    return rf"{mantissa:.{digits - 1}f}\times10^{{{exponent}}}"


def claim_mark(holds: bool | None) -> str:
    """What the text shows after a qualitative claim checked on the results: nothing when it holds, a visible
    mark when it does not, ``(n/a)`` when the config did not run what it needs."""
    return {True: "", False: r"\textbf{[not supported by these results]}", None: r"\textsuperscript{(n/a)}"}[holds]


def pm(mean: float, std: float, digits: int = 3) -> str:
    """``mean \\pm std`` in math mode."""
    return rf"${fmt(mean, digits)} \pm {fmt(std, 2)}$"


def macro(name: str, value: str, source: str) -> str:
    """``\\newcommand{\\name}{value}`` with a comment naming the source file."""
    if not name.isalpha():
        raise ValueError(f"Invalid macro name: {name!r} (letters only)")
    return f"\\newcommand{{\\{name}}}{{{value}}} % from {source}"


def macro_key(name: str) -> str:
    """A config name as a letters-only macro fragment: ``l2sp_armijo`` -> ``LTwospArmijo``."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_"))
    return "".join(DIGITS.get(ch, ch) for ch in camel)


def escape(text: str) -> str:
    """Plain text safe in LaTeX's text mode (the characters LaTeX treats specially are escaped)."""
    special = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(special.get(ch, ch) for ch in text)


def listing(items: list[str]) -> str:
    """Items as the text lists them: ``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
