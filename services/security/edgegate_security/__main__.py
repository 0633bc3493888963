"""`python -m edgegate_security`: run the security service until SIGTERM."""

from edgegate_common.service import run_main
from edgegate_security.app import build
from edgegate_security.config import SecuritySettings


def main() -> None:
    run_main(SecuritySettings, build)


if __name__ == "__main__":
    main()
