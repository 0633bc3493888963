"""Install what the console's browser tests need (a `make test-console` step).

- Debian's chromium at /usr/bin/chromium: Playwright drives it, since Playwright's own
  browser download is not reachable where the suite is built;
- npm, to install axe-core, the accessibility checker injected into every console page,
  pinned by tests/console/package-lock.json (node_modules stays out of git).

Missing Debian packages are installed with apt-get when running as root on Debian (as CI
does, like `make images` does for buildah); anywhere else the script says what to install.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Debian's npm brings nodejs; --no-install-recommends keeps chromium's extras out.
APT_INSTALL = ("apt-get", "install", "-y", "--no-install-recommends")


def _missing_packages() -> list[str]:
    """The Debian packages to install: named as the programs they bring."""
    missing = [] if CHROMIUM.exists() else ["chromium"]
    if shutil.which("npm") is None:
        missing.append("npm")
    return missing


def install_debian_packages() -> None:
    """apt-get install chromium and npm where either is missing (root on Debian only)."""
    missing = _missing_packages()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            f"the console tests need {CHROMIUM} and npm; missing: {', '.join(missing)}. "
            f"Install (Debian, as root): apt-get install -y --no-install-recommends "
            f"{' '.join(missing)}"
        )
    print(f"installing {', '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], [*APT_INSTALL, *missing]):
        subprocess.run(argv, env=env, check=True)
    if not CHROMIUM.exists():
        raise SystemExit(f"apt-get installed chromium, yet {CHROMIUM} is not there")


def install_node_modules(folder: Path) -> None:
    """`npm ci` from the lock file (`npm install` before one exists), unless up to date.

    npm records what it installed in node_modules/.package-lock.json; when that is newer
    than package.json and the lock, nothing changed, and no registry is asked.
    """
    manifest, lock = folder / "package.json", folder / "package-lock.json"
    installed = folder / "node_modules" / ".package-lock.json"
    sources = [path for path in (manifest, lock) if path.exists()]
    if installed.exists() and all(
        installed.stat().st_mtime >= path.stat().st_mtime for path in sources
    ):
        return
    command = "ci" if lock.exists() else "install"
    npm = shutil.which("npm") or "npm"
    subprocess.run([npm, command, "--no-audit", "--no-fund"], cwd=folder, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Install chromium and axe-core for the console's browser tests."
    )
    parser.add_argument(
        "--console-dir",
        type=Path,
        default=Path("tests/console"),
        help="the folder holding package.json and package-lock.json (default: tests/console)",
    )
    args = parser.parse_args()
    install_debian_packages()
    install_node_modules(args.console_dir)


if __name__ == "__main__":
    main()
