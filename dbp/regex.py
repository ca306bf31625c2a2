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

Linear by construction. MongoDB's PCRE (and SecantusDB's ``re``) backtrack:
from each start position they try the pattern's choices depth first, so their
time is the number of partial parses they explore. The subset admits only
patterns in which the next character decides every choice:

1. Alternatives (``a|b``) inside a group can never match nothing and no two can
   start with the same character (``(?:ZTF|ztf)``, not ``(a|ab)`` or ``(.|.)``).
2. A quantifier that leaves a choice (``? * + {m,} {m,n}``) repeats something
   that cannot match nothing, and no character can both start another repetition
   and continue after it (``^[a-z]*[0-9]``, ``a*`` at the end; not ``a*a``, ``.*x``,
   ``a?a``). The set "what continues after it" looks through optional items and
   group ends, as a DFA construction would (Glushkov's follow sets).
3. A quantified group holds no quantifier and no ``|``; at most 8 quantifiers,
   repeat counts up to 100, groups nested up to 20 deep, 256 characters.
4. Of the top-level alternatives not anchored by ``^``, at most one holds a loop
   (``* + {m,}``, or more than 16 repeats) that something able to fail follows
   (``[^z]*z``; not a trailing ``.*``): each such alternative may scan the rest
   of the value from every start, so their costs would add up (eight of them:
   150-300 ms on 1,000 characters). And the pattern, with each repeat's body
   copied as often as it may repeat (as PostgreSQL compiles ``{m,n}``), has at
   most 512 positions (``(?:a...){100}`` of 30 characters: 3,000 states).
5. In an alternative not anchored by ``^``, such a loop holds no character that
   can start the alternative (``ZTF[0-9]+x``; not ``[a-z]+[0-9]`` or ``ZTF.*19``).
   Then a start's run never covers another start except through the pattern's
   bounded part (at most 512 positions), so each character of the value is
   scanned from O(p) starts: the whole search is O(p·n), not O(p·n²).

With 1 and 2, the pattern is deterministic (its Glushkov automaton is): after
any prefix of the input, at most one partial parse can go on, and every other
choice fails on the next character, having cost O(p) work (p: the pattern's
length, the choices one position can offer). With 3, no empty iteration or
empty alternative gives a second parse of the same text. So a match attempt
from one start costs O(p·m) for m characters; rule 5 keeps the runs of different
starts from overlapping beyond the pattern's bounded part, so the search over
all n starts is O(p·n). PostgreSQL's engine does not backtrack.

One relaxation, for ``^ZTF.*19``: in a branch anchored by ``^`` (one start
position), one quantifier may break rule 2 if everything after it is of bounded
length (no ``* + {m,}`` follows it). The engine then tries each of the at most m
places the loop can stop, and from each runs a deterministic tail of bounded
length L: O(p·m·L). Top-level alternatives (``a*|b*``) are tried one after the
other, so their costs add; each is checked as a pattern of its own, and rule 4
keeps the sum to one quadratic term.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbp.errors import FilterError

__all__ = ["MAX_LENGTH", "Regex", "escape", "translate"]

MAX_LENGTH = 256
MAX_QUANTIFIERS = 8
MAX_REPEAT = 100
#: At most this many pattern positions once fixed repeats are expanded (PostgreSQL builds one state each).
MAX_EXPANDED = 512
#: A quantifier that can repeat more than this many times is a loop (rule 4).
LONG_LOOP = 16
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


#: A set of characters: sorted, disjoint, non-adjacent code point ranges (inclusive).
CharSet = tuple[tuple[int, int], ...]
_TOP = 0x10FFFF
_DOT: CharSet = ((0, 9), (11, _TOP))  # '.': anything but a newline


def _norm(ranges: list[tuple[int, int]]) -> CharSet:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(chars: CharSet) -> CharSet:
    out, start = [], 0
    for lo, hi in chars:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _TOP:
        out.append((start, _TOP))
    return tuple(out)


def _common(a: CharSet, b: CharSet) -> int | None:
    """The smallest code point in both sets, or None."""
    found = [max(alo, blo) for alo, ahi in a for blo, bhi in b if max(alo, blo) <= min(ahi, bhi)]
    return min(found) if found else None


@dataclass(frozen=True)
class _Node:
    """The parsed pattern: ``char`` (one character of ``chars``), ``anchor`` (^ $), ``seq``, ``alt``,
    ``repeat`` (``items[0]`` ``lo`` to ``hi`` times, None: unbounded; ``pos``: where its quantifier is)."""

    kind: str
    pos: int
    chars: CharSet = ()
    items: tuple[_Node, ...] = ()
    lo: int = 1
    hi: int | None = 1
    text: str = ""


def _nullable(node: _Node) -> bool:
    if node.kind == "char":
        return False
    if node.kind == "anchor":
        return True
    if node.kind == "seq":
        return all(_nullable(i) for i in node.items)
    if node.kind == "alt":
        return any(_nullable(i) for i in node.items)
    return node.lo == 0 or _nullable(node.items[0])


def _first(node: _Node) -> CharSet:
    """The characters a match of ``node`` can start with."""
    if node.kind == "char":
        return node.chars
    if node.kind == "seq":
        out: list[tuple[int, int]] = []
        for item in node.items:
            out.extend(_first(item))
            if not _nullable(item):
                break
        return _norm(out)
    return _norm([r for item in node.items for r in _first(item)])


def _chars(node: _Node) -> CharSet:
    """Every character a match of ``node`` can hold."""
    if node.kind == "char":
        return node.chars
    return _norm([r for item in node.items for r in _chars(item)])


def _repeats(node: _Node) -> list[_Node]:
    found = [node] if node.kind == "repeat" else []
    return found + [r for item in node.items for r in _repeats(item)]


def _example(a: CharSet, b: CharSet) -> str:
    """A character in both sets, printable and ASCII if there is one."""
    for lo, hi in (0x61, 0x7A), (0x21, 0x7E), (0xA1, _TOP):
        code = _common(_common_set(a, b), ((lo, hi),))
        if code is not None:
            return repr(chr(code))
    code = _common(a, b)
    return f"U+{code or 0:04X}"


def _common_set(a: CharSet, b: CharSet) -> CharSet:
    return _norm([(max(alo, blo), min(ahi, bhi)) for alo, ahi in a for blo, bhi in b if max(alo, blo) <= min(ahi, bhi)])


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

    # Each parse_* returns (mongo text, postgres text, holds a quantifier or alternation, node).

    def parse_alternation(self, depth: int) -> tuple[str, str, bool, _Node]:
        start = self.i
        branches = [self.parse_branch(depth)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.parse_branch(depth))
        if len(branches) > 1 and any(not b[0] for b in branches):
            raise self.error("an empty alternative", start)
        mongo = "|".join(b[0] for b in branches)
        postgres = "|".join(b[1] for b in branches)
        node = branches[0][3] if len(branches) == 1 else _Node("alt", start, items=tuple(b[3] for b in branches))
        return mongo, postgres, len(branches) > 1 or any(b[2] for b in branches), node

    def parse_branch(self, depth: int) -> tuple[str, str, bool, _Node]:
        mongo: list[str] = []
        postgres: list[str] = []
        items: list[_Node] = []
        complex_ = False
        begin = self.i
        while self.i < len(self.p) and self.peek() not in "|)":
            start = self.i
            m, pg, inner, repeatable, node = self.parse_atom(depth)
            q = self.parse_quantifier()
            if q:
                if not repeatable:
                    raise self.error(f"a quantifier {q!r} after {self.p[start:start + 1]!r}", start + len(m))
                if inner:
                    raise self.error(f"a quantifier {q!r} on a group holding a quantifier or '|'",
                                     self.i - len(q))
                complex_ = True
                lo, hi = _bounds(q)
                node = _Node("repeat", self.i - len(q), items=(node,), lo=lo, hi=hi, text=q)
            mongo.append(m + q)
            postgres.append(pg + q)
            items.append(node)
            complex_ = complex_ or inner
        return "".join(mongo), "".join(postgres), complex_, _Node("seq", begin, items=tuple(items))

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

    def parse_atom(self, depth: int) -> tuple[str, str, bool, bool, _Node]:
        """(mongo, postgres, holds a quantifier or '|', may be quantified, node)."""
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
            m, pg, inner, node = self.parse_alternation(depth + 1)
            if self.peek() != ")":
                raise self.error("an unclosed '('", start)
            self.i += 1
            if not m:
                raise self.error("an empty group", start)
            return opening + m + ")", opening + pg + ")", inner, True, node
        if ch in ("*", "+", "?", "{"):
            raise self.error(f"a quantifier {ch!r} with nothing to repeat")
        if ch in ("]", "}"):
            raise self.error(f"an unescaped {ch!r} (escape it: \\{ch})")
        self.i += 1
        if ch == ".":
            return ".", "[^\\n]", False, True, _Node("char", start, _DOT)
        if ch == "^":
            return "^", "^", False, False, _Node("anchor", start)
        if ch == "$":
            return "$", "(?=\\n?$)", False, False, _Node("anchor", start)
        if ch == "[":
            self.i -= 1
            m, chars = self.parse_class()
            return m, m, False, True, _Node("char", start, chars)
        if ch == "\\":
            esc = self.peek()
            if not esc:
                raise self.error("a trailing backslash", start)
            self.i += 1
            if esc not in ESCAPABLE:
                hint = _HINTS.get(esc) or ("backreferences are not portable" if esc.isdigit() else "")
                raise self.error(f"the escape '\\{esc}'" + (f" ({hint})" if hint else ""), start)
            return "\\" + esc, "\\" + esc, False, True, _Node("char", start, ((ord(esc), ord(esc)),))
        self._check_char(ch, start)
        if self.icase and ch.isascii() and ch.isalpha():
            both = f"[{ch.lower()}{ch.upper()}]"
            chars = _norm([(ord(ch.lower()), ord(ch.lower())), (ord(ch.upper()), ord(ch.upper()))])
            return both, both, False, True, _Node("char", start, chars)
        return ch, ch, False, True, _Node("char", start, ((ord(ch), ord(ch)),))

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

    def parse_class(self) -> tuple[str, CharSet]:
        """The class's text, and the characters it matches."""
        start = self.i
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        if self.peek() == "]":
            raise self.error("an empty class or a leading ']' (escape it: \\])", start)
        parts: list[str] = []
        extra: list[str] = []
        ranges: list[tuple[int, int]] = []
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
                ranges.append((ord(lo), ord(hi)))
                if self.icase:
                    extra.extend(_letters(ord(lo), ord(hi)))
            else:
                if self.peek() == "-":
                    raise self.error("an unescaped '-' at the end of a class (escape it: \\-)")
                parts.append(text)
                ranges.append((ord(lo), ord(lo)))
                if self.icase and lo.isascii() and lo.isalpha():
                    extra.append(lo.swapcase())
        body = "".join(parts) + "".join(dict.fromkeys(extra))
        chars = _norm(ranges + [(ord(c), ord(c)) for c in extra])
        return "[" + ("^" if negate else "") + body + "]", _complement(chars) if negate else chars


def translate(pattern: object, options: object = "") -> Regex:
    """Check ``pattern`` against the portable subset and translate it for each engine."""
    if not isinstance(pattern, str):
        raise FilterError(f"$regex takes a pattern string, not {type(pattern).__name__}")
    if options not in ("", "i"):
        raise FilterError(f"$options takes '' or 'i', not {options!r}")
    if len(pattern) > MAX_LENGTH:
        raise FilterError(f"$regex: a pattern of {len(pattern)} characters is longer than {MAX_LENGTH}")
    parser = _Parser(pattern, options == "i")
    mongo, postgres, _, root = parser.parse_alternation(0)
    if parser.i != len(pattern):  # a ')' with no '('
        raise parser.error("an unmatched ')'")
    branches = root.items if root.kind == "alt" else (root,)
    for branch in branches:  # top-level alternatives: costs add
        _Checker(parser).check_branch(branch)
    _check_costs(parser, branches)
    return Regex(pattern, options == "i", mongo, postgres)


def _size(node: _Node) -> int:
    """How many pattern positions ``node`` expands to (PostgreSQL copies the body of ``{m,n}`` n times)."""
    if node.kind in ("char", "anchor"):
        return 1
    if node.kind == "repeat":
        return _size(node.items[0]) * max(node.lo + (node.hi is None), node.hi or 0, 1)
    return sum(_size(i) for i in node.items)


def _long_loops(branch: _Node) -> list[_Node]:
    """The quantifiers of a top-level ``branch`` that can repeat more than :data:`LONG_LOOP` times and
    be followed by something that can fail (a character or ``$``): a run that ends in failure."""
    items = branch.items if branch.kind == "seq" else (branch,)
    required = [i for i, item in enumerate(items) if not _nullable(item) or item.kind == "anchor"]
    head = items[: required[-1] + 1] if required else ()
    return [r for item in head for r in _repeats(item) if r.hi is None or r.hi > LONG_LOOP]


def _check_costs(parser: _Parser, branches: tuple[_Node, ...]) -> None:
    """Rules 4 and 5 of the module docstring: a bounded expansion, no run that holds a start, one costly
    unanchored alternative."""
    size = sum(_size(b) for b in branches)
    if size > MAX_EXPANDED:
        biggest = max((r for b in branches for r in _repeats(b)), key=lambda r: _size(r), default=None)
        raise parser.error(f"repeat counts that expand the pattern to {size} positions (at most "
                           f"{MAX_EXPANDED}: repeat counts times what they repeat)",
                           biggest.pos if biggest else 0)
    costly = 0
    for branch in branches:
        anchored = branch.kind == "seq" and bool(branch.items) and branch.items[0].kind == "anchor" \
            and parser.p[branch.items[0].pos] == "^"
        loops = [] if anchored else _long_loops(branch)
        start = _first(branch)
        for loop in loops:  # rule 5
            inside = _chars(loop.items[0])
            if _common(inside, start) is not None:
                raise parser.error(
                    f"a quantifier {loop.text!r} whose run can hold {_example(inside, start)}, which can also start "
                    "the pattern: unanchored, the search would rescan that run from every start (anchor with ^; "
                    "a leading X* is not needed for a match anywhere, and a leading X+ matches as X)", loop.pos)
        costly += bool(loops)
        if costly > 1:
            raise parser.error(f"a quantifier {loops[0].text!r} in a second unanchored alternative with a loop "
                               "that can run on and fail (at most one: anchor the others with ^; a leading "
                               "X* is not needed for a match anywhere)", loops[0].pos)


def _bounds(quantifier: str) -> tuple[int, int | None]:
    if quantifier in ("*", "+", "?"):
        return {"*": (0, None), "+": (1, None), "?": (0, 1)}[quantifier]
    lo, comma, hi = quantifier[1:-1].partition(",")
    return int(lo), (int(hi) if hi else None) if comma else int(lo)


class _Checker:
    """Rules 1 and 2 of the module docstring, with the relaxation for anchored branches."""

    def __init__(self, parser: _Parser) -> None:
        self.parser = parser
        #: Quantifiers that leave a choice the next character does not decide, with such a character.
        self.ambiguous: list[tuple[_Node, str]] = []

    def check_branch(self, branch: _Node) -> None:
        self.walk(branch, ())
        if not self.ambiguous:
            return
        node, example = min(self.ambiguous, key=lambda a: a[0].pos)
        anchored = bool(branch.items) and branch.items[0].kind == "anchor" and self.parser.p[branch.items[0].pos] == "^"
        later = [r for r in _repeats(branch) if r.hi is None and r.pos > node.pos]
        if anchored and len(self.ambiguous) == 1 and not later:
            return
        raise self.parser.error(
            f"a quantifier {node.text!r} that {example} could either repeat or end (make them differ, "
            "e.g. [^x]*x; or anchor with ^ and put no *, + or {m,} after it)", node.pos)

    def walk(self, node: _Node, follow: CharSet) -> None:
        """Check ``node``, which ``follow`` (the characters that can come right after it) follows."""
        if node.kind == "seq":
            after = follow
            for item in reversed(node.items):
                self.walk(item, after)
                after = _norm(list(_first(item)) + (list(after) if _nullable(item) else []))
        elif node.kind == "alt":
            for i, branch in enumerate(node.items):
                if _nullable(branch):
                    raise self.parser.error("an alternative that can match nothing (make the group optional "
                                            "instead: (?:a|b)?)", branch.pos)
                for other in node.items[:i]:
                    if _common(_first(branch), _first(other)) is not None:
                        raise self.parser.error(f"alternatives that can both start with "
                                                f"{_example(_first(branch), _first(other))} (factor it out: "
                                                "a(?:b|c), not ab|ac)", branch.pos)
                self.walk(branch, follow)
        elif node.kind == "repeat":
            body = node.items[0]
            if _nullable(body):
                raise self.parser.error(f"a quantifier {node.text!r} on something that can match nothing", node.pos)
            if node.hi != node.lo and _common(_first(body), follow) is not None:
                self.ambiguous.append((node, _example(_first(body), follow)))
            again = node.hi is None or node.hi > 1
            self.walk(body, _norm(list(follow) + list(_first(body))) if again else follow)


def escape(text: str) -> str:
    """``text`` as a pattern that matches it literally, on both engines (for user input in a ``$regex``)."""
    return "".join("\\" + ch if ch in META else ch for ch in text)
