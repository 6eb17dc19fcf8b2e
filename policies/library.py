"""The CEL library, for the modules that evaluate or compile rules.

Imported only when a config has rules (`policies.compile_policies` compiles through
`policies.compiler`, whose rule compilation imports `policies.expression`): a gateway
whose config has no `policies.rules` never loads the library (~3 MB of native code
and its Python modules; docs/performance.md, "Start-up and idle memory"). Imported
without the library's command-line front end (common/imports.py `placeholder`), which
`import cel` would otherwise load (prompt_toolkit, typer, rich: ~250 modules).
"""

from common.imports import placeholder

with placeholder("cel.cli"):
    import cel

__all__ = ["cel"]
