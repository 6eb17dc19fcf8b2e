"""CEL source text as tokens, each with its offset, for the parser and for problem positions.

The CEL library parses and evaluates rules but exposes no syntax tree, so seawall
reads the text a second time to check it (names, types, cost). The library stays
the authority on syntax: its parser runs first and a rule it refuses never gets
here, so this lexer only has to read valid CEL correctly (strings in every quote
form, raw and bytes prefixes, escapes, numbers in decimal and hex, comments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Words CEL reserves: not usable as names (the library refuses them too).
RESERVED = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "namespace",
        "package",
        "return",
        "var",
        "void",
        "while",
    }
)

#: Two-character operators first, so `<=` is never read as `<` then `=`.
OPERATORS = (
    "&&",
    "||",
    "==",
    "!=",
    "<=",
    ">=",
    "<",
    ">",
    "!",
    "+",
    "-",
    "*",
    "/",
    "%",
    "?",
    ":",
    ".",
    ",",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
)

_SPACE = re.compile(r"(?:[ \t\r\n\f]+|//[^\n]*)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?"
    r"|(?:[0-9]+\.[0-9]+|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[0-9]+[eE][+-]?[0-9]+"
    r"|[0-9]+[uU]?"
)
_STRING_START = re.compile(r"([rR]?[bB]?|[bB]?[rR]?)('''|\"\"\"|'|\")")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}


class LexError(ValueError):
    """Text the lexer cannot read; `offset` is where it stopped."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Token:
    #: `ident`, `int`, `uint`, `double`, `string`, `bytes`, `op` or `end`.
    kind: str
    #: The source text of the token (an operator's symbol, a name, a literal as written).
    text: str
    offset: int
    #: A literal's value: int for `int`/`uint`, float, str, bytes; `None` otherwise.
    value: object = None


def tokenize(source: str) -> list[Token]:
    """Every token of `source`, ending with one `end` token."""
    tokens: list[Token] = []
    position = 0
    length = len(source)
    while True:
        space = _SPACE.match(source, position)
        if space:
            position = space.end()
        if position >= length:
            tokens.append(Token("end", "", length))
            return tokens
        token = _read_one(source, position)
        tokens.append(token)
        position += len(token.text)


def _read_one(source: str, position: int) -> Token:
    string = _STRING_START.match(source, position)
    if string and (string.group(1) or source[position] in "'\""):
        return _read_string(source, position, string.group(1).lower(), string.group(2))
    char = source[position]
    if char.isdigit() or (char == "." and source[position + 1 : position + 2].isdigit()):
        number = _NUMBER.match(source, position)
        if number:
            return _number_token(number.group(), position)
    ident = _IDENT.match(source, position)
    if ident:
        return Token("ident", ident.group(), position)
    for operator in OPERATORS:
        if source.startswith(operator, position):
            return Token("op", operator, position)
    raise LexError(position, f"unexpected character {char!r}")


def _number_token(text: str, position: int) -> Token:
    unsigned = text[-1] in "uU"
    digits = text[:-1] if unsigned else text
    if digits[:2] in ("0x", "0X"):
        return Token("uint" if unsigned else "int", text, position, int(digits, 16))
    if unsigned:
        return Token("uint", text, position, int(digits))
    if any(c in digits for c in ".eE"):
        return Token("double", text, position, float(digits))
    return Token("int", text, position, int(digits))


def _read_string(source: str, position: int, prefix: str, quote: str) -> Token:
    start = position + len(prefix) + len(quote)
    end = source.find(quote, start)
    raw = "r" in prefix
    # A quote preceded by an odd run of backslashes is escaped (not in raw strings).
    while end != -1 and not raw and _escaped(source, end, start):
        end = source.find(quote, end + 1)
    if end == -1:
        raise LexError(position, "unterminated string literal")
    body = source[start:end]
    text = source[position : end + len(quote)]
    value = body if raw else _unescape(body, position)
    if "b" in prefix:
        encoded = value.encode("utf-8", "surrogatepass") if raw else _latin_bytes(value)
        return Token("bytes", text, position, encoded)
    return Token("string", text, position, value)


def _escaped(source: str, index: int, floor: int) -> bool:
    count = 0
    while index - 1 - count >= floor and source[index - 1 - count] == "\\":
        count += 1
    return count % 2 == 1


def _latin_bytes(value: str) -> bytes:
    """A bytes literal: `\\xHH` and octal escapes are single bytes, other text is UTF-8."""
    out = bytearray()
    for char in value:
        out += bytes([ord(char)]) if ord(char) < 256 else char.encode("utf-8")
    return bytes(out)


def _unescape(body: str, offset: int) -> str:
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        code = body[index + 1 : index + 2]
        if code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
            index += 2
        elif code in ("x", "X", "u", "U"):
            width = {"x": 2, "X": 2, "u": 4, "U": 8}[code]
            digits = body[index + 2 : index + 2 + width]
            out.append(chr(int(digits, 16)))
            index += 2 + width
        elif code.isdigit():
            out.append(chr(int(body[index + 1 : index + 4], 8)))
            index += 4
        else:
            raise LexError(offset, f"invalid escape sequence '\\{code}'")
    return "".join(out)


def line_column(source: str, offset: int) -> str:
    """`line:column` (both from 1) of `offset`, as the CEL library reports positions."""
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{column}"
