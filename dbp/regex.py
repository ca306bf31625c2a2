"""The portable regex subset of ``$regex``: patterns that mean the same on every engine.

MongoDB runs PCRE (SecantusDB: Python's ``re``); PostgreSQL runs its own ARE
engine. They agree on a small core, which this module checks and translates::

    literal characters     a é 7 - # (anything but the metacharacters below)
    escaped metacharacters \\ \\^ \\$ \\. \\| \\? \\* \\+ \\( \\) \\[ \\] \\{ \\} \\- \\/
    any character          .          (not a newline, as in PCRE)
    anchors                ^ $        (start; end or before a final newline, as in PCRE)
    classes                [abc] [a-z0-9] [^\\]x]  (escape \\ ] [ - ^ inside; ranges by code point)
    quantifiers            * + ? {m} {m,} {m,n}    (m, n <= 100; greedy only)
    alternation, groups    a|b (ab) (?:ab)

Everything else is refused with a :class:`FilterError` naming the construct and
its position: ``\\d \\w \\s \\b`` (their Unicode meaning differs between engines:
write ``[0-9]``), backreferences, lookaround, inline flags, lazy or possessive
quantifiers, POSIX classes, a ``{`` that is not a quantifier.

The ``"i"`` option means ASCII case-insensitivity: dbp rewrites each ASCII
letter as ``[xX]`` for every engine instead of relying on the engines' Unicode
case folding, which differs (PCRE folds the Kelvin sign to k, Python also
folds dotless i, PostgreSQL neither). Non-ASCII letters match themselves only.

Limits against runaway backtracking on MongoDB: at most 256 characters, at
most 8 quantifiers, and no quantifier on a group that holds a quantifier or an
alternation (``(a+)+``, ``(a|ab)*``). PostgreSQL's engine does not backtrack
exponentially; PCRE does.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbp.errors import FilterError

__all__ = ["MAX_LENGTH", "Regex", "escape", "translate"]

MAX_LENGTH = 256
MAX_QUANTIFIERS = 8
MAX_REPEAT = 100
#: Metacharacters outside classes (escaped to be literal).
META = frozenset("\\^$.|?*+()[]{}")
#: What a backslash may escape outside a class, and inside one.
ESCAPABLE = META | {"-", "/"}
CLASS_ESCAPABLE = frozenset("\\]-^[")
_HINTS = {
    "d": "write [0-9]", "D": "write [^0-9]", "w": "write [A-Za-z0-9_]", "W": "write [^A-Za-z0-9_]",
    "s": "list the characters, e.g. [ \\t]", "S": "list the characters", "b": "word boundaries differ",
    "B": "word boundaries differ", "A": "use ^", "Z": "use $", "z": "use $",
}


@dataclass(frozen=True)
class Regex:
    """A checked pattern: ``mongo`` for MongoDB (no options needed), ``postgres`` for ``~``."""

    pattern: str
    icase: bool
    mongo: str
    postgres: str


def _refuse(pattern: str, pos: int, what: str) -> FilterError:
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    return FilterError(f"$regex {shown!r}: {what} at position {pos} is outside the portable subset "
                       "(see dbp.regex)")


def _letters(lo: int, hi: int) -> list[str]:
    """The other-case counterparts of the ASCII letters in ``lo..hi``."""
    out = []
    for code in range(max(lo, 65), min(hi, 122) + 1):
        ch = chr(code)
        if ch.isascii() and ch.isalpha():
            out.append(ch.swapcase())
    return out


class _Parser:
    def __init__(self, pattern: str, icase: bool) -> None:
        self.p = pattern
        self.i = 0
        self.icase = icase
        self.quantifiers = 0

    def error(self, what: str, pos: int | None = None) -> FilterError:
        return _refuse(self.p, self.i if pos is None else pos, what)

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    # Each parse_* returns (mongo text, postgres text, holds a quantifier or alternation).

    def parse_alternation(self, depth: int) -> tuple[str, str, bool]:
        start = self.i
        branches = [self.parse_branch(depth)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.parse_branch(depth))
        if len(branches) > 1 and any(not m for m, _, _ in branches):
            raise self.error("an empty alternative", start)
        mongo = "|".join(b[0] for b in branches)
        postgres = "|".join(b[1] for b in branches)
        return mongo, postgres, len(branches) > 1 or any(b[2] for b in branches)

    def parse_branch(self, depth: int) -> tuple[str, str, bool]:
        mongo: list[str] = []
        postgres: list[str] = []
        complex_ = False
        while self.i < len(self.p) and self.peek() not in "|)":
            start = self.i
            m, pg, inner, repeatable = self.parse_atom(depth)
            q = self.parse_quantifier()
            if q:
                if not repeatable:
                    raise self.error(f"a quantifier {q!r} after {self.p[start:start + 1]!r}", start + len(m))
                if inner:
                    raise self.error(f"a quantifier {q!r} on a group holding a quantifier or '|'",
                                     self.i - len(q))
                complex_ = True
            mongo.append(m + q)
            postgres.append(pg + q)
            complex_ = complex_ or inner
        return "".join(mongo), "".join(postgres), complex_

    def parse_quantifier(self) -> str:
        ch = self.peek()
        start = self.i
        if ch in ("*", "+", "?"):
            self.i += 1
            q = ch
        elif ch == "{":
            end = self.p.find("}", self.i)
            body = self.p[self.i + 1:end] if end > 0 else ""
            lo, comma, hi = body.partition(",")
            if end < 0 or not lo.isdigit() or not lo.isascii() or (hi and not (hi.isdigit() and hi.isascii())):
                raise self.error("a '{' that is not a quantifier {m}, {m,} or {m,n} (escape it: \\{)")
            if int(lo) > MAX_REPEAT or (hi and int(hi) > MAX_REPEAT):
                raise self.error(f"a repeat count above {MAX_REPEAT}")
            if hi and int(hi) < int(lo):
                raise self.error("a quantifier {m,n} with n < m")
            q = "{" + str(int(lo)) + ("," if comma else "") + (str(int(hi)) if hi else "") + "}"
            self.i = end + 1
        else:
            return ""
        if self.peek() in ("?", "+", "*", "{"):
            kind = {"?": "a lazy quantifier", "+": "a possessive quantifier"}.get(self.peek(), "a second quantifier")
            raise self.error(kind)
        self.quantifiers += 1
        if self.quantifiers > MAX_QUANTIFIERS:
            raise self.error(f"more than {MAX_QUANTIFIERS} quantifiers", start)
        return q

    def parse_atom(self, depth: int) -> tuple[str, str, bool, bool]:
        """(mongo, postgres, holds a quantifier or '|', may be quantified)."""
        ch = self.peek()
        start = self.i
        if ch == "(":
            self.i += 1
            if self.p.startswith("?:", self.i):
                self.i += 2
                opening = "(?:"
            elif self.peek() == "?":
                raise self.error(f"the group syntax {self.p[start:start + 3]!r}", start)
            else:
                opening = "("
            if depth >= 20:
                raise self.error("groups nested more than 20 deep", start)
            m, pg, inner = self.parse_alternation(depth + 1)
            if self.peek() != ")":
                raise self.error("an unclosed '('", start)
            self.i += 1
            if not m:
                raise self.error("an empty group", start)
            return opening + m + ")", opening + pg + ")", inner, True
        if ch in ("*", "+", "?", "{"):
            raise self.error(f"a quantifier {ch!r} with nothing to repeat")
        if ch in ("]", "}"):
            raise self.error(f"an unescaped {ch!r} (escape it: \\{ch})")
        self.i += 1
        if ch == ".":
            return ".", "[^\\n]", False, True
        if ch == "^":
            return "^", "^", False, False
        if ch == "$":
            return "$", "(?=\\n?$)", False, False
        if ch == "[":
            self.i -= 1
            m = self.parse_class()
            return m, m, False, True
        if ch == "\\":
            esc = self.peek()
            if not esc:
                raise self.error("a trailing backslash", start)
            self.i += 1
            if esc not in ESCAPABLE:
                hint = _HINTS.get(esc) or ("backreferences are not portable" if esc.isdigit() else "")
                raise self.error(f"the escape '\\{esc}'" + (f" ({hint})" if hint else ""), start)
            return "\\" + esc, "\\" + esc, False, True
        self._check_char(ch, start)
        if self.icase and ch.isascii() and ch.isalpha():
            both = f"[{ch.lower()}{ch.upper()}]"
            return both, both, False, True
        return ch, ch, False, True

    def _check_char(self, ch: str, pos: int) -> None:
        if ch == "\x00":
            raise self.error("a NUL character", pos)
        if "\ud800" <= ch <= "\udfff":
            raise self.error("a lone surrogate", pos)

    def class_char(self) -> tuple[str, str]:
        """One class member: (its text in the class, the character it stands for)."""
        ch = self.peek()
        pos = self.i
        if not ch:
            raise self.error("an unclosed '['")
        self.i += 1
        if ch == "\\":
            esc = self.peek()
            if esc not in CLASS_ESCAPABLE or not esc:
                hint = _HINTS.get(esc, "")
                raise self.error(f"the escape '\\{esc}' in a class" + (f" ({hint})" if hint else ""), pos)
            self.i += 1
            return "\\" + esc, esc
        if ch in "[-":
            raise self.error(f"an unescaped {ch!r} in a class (escape it: \\{ch})", pos)
        self._check_char(ch, pos)
        return ch, ch

    def parse_class(self) -> str:
        start = self.i
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        if self.peek() == "]":
            raise self.error("an empty class or a leading ']' (escape it: \\])", start)
        parts: list[str] = []
        extra: list[str] = []
        while True:
            if not self.peek():
                raise self.error("an unclosed '['", start)
            if self.peek() == "]":
                self.i += 1
                break
            text, lo = self.class_char()
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                pos = self.i
                hi_text, hi = self.class_char()
                if ord(hi) < ord(lo):
                    raise self.error(f"a reversed range {lo}-{hi}", pos)
                parts.append(f"{text}-{hi_text}")
                if self.icase:
                    extra.extend(_letters(ord(lo), ord(hi)))
            else:
                if self.peek() == "-":
                    raise self.error("an unescaped '-' at the end of a class (escape it: \\-)")
                parts.append(text)
                if self.icase and lo.isascii() and lo.isalpha():
                    extra.append(lo.swapcase())
        body = "".join(parts) + "".join(dict.fromkeys(extra))
        return "[" + ("^" if negate else "") + body + "]"


def translate(pattern: object, options: object = "") -> Regex:
    """Check ``pattern`` against the portable subset and translate it for each engine."""
    if not isinstance(pattern, str):
        raise FilterError(f"$regex takes a pattern string, not {type(pattern).__name__}")
    if options not in ("", "i"):
        raise FilterError(f"$options takes '' or 'i', not {options!r}")
    if len(pattern) > MAX_LENGTH:
        raise FilterError(f"$regex: a pattern of {len(pattern)} characters is longer than {MAX_LENGTH}")
    parser = _Parser(pattern, options == "i")
    mongo, postgres, _ = parser.parse_alternation(0)
    if parser.i != len(pattern):  # a ')' with no '('
        raise parser.error("an unmatched ')'")
    return Regex(pattern, options == "i", mongo, postgres)


def escape(text: str) -> str:
    """``text`` as a pattern that matches it literally, on both engines (for user input in a ``$regex``)."""
    return "".join("\\" + ch if ch in META else ch for ch in text)
