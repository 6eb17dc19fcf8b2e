"""The `x-seawall-chaos` header: `FAULT[;key=value]... [, FAULT[;key=value]...]`.

Whitespace around separators is ignored; names and keys are case-sensitive;
a key may appear once per fault. Every error names the fault and the key at
fault, because the caller is a developer who wants to fix the header at once.
"""

from __future__ import annotations

from chaos.faults import FaultError, FaultSpec, build

#: More than this many faults in one header is refused (before server caps).
MAX_HEADER_FAULTS = 32
MAX_HEADER_LENGTH = 4096


def parse(header: str) -> list[FaultSpec]:
    if len(header) > MAX_HEADER_LENGTH:
        raise FaultError(f"the header is longer than {MAX_HEADER_LENGTH} characters")
    specs = []
    for number, item in enumerate(header.split(","), start=1):
        fields = [f.strip() for f in item.split(";")]
        name = fields[0]
        if not name:
            raise FaultError(f"fault #{number} is empty")
        values: dict[str, str] = {}
        for field in fields[1:]:
            key, equals, value = field.partition("=")
            key, value = key.strip(), value.strip()
            if not equals or not key or not value:
                raise FaultError(f"{name}: {field!r} is not key=value")
            if key in values:
                raise FaultError(f"{name}: {key} is given twice")
            values[key] = value
        specs.append(build(name, values))
        if len(specs) > MAX_HEADER_FAULTS:
            raise FaultError(f"more than {MAX_HEADER_FAULTS} faults in one header")
    return specs
