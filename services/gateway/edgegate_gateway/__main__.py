"""`python -m edgegate_gateway`: run the gateway service until SIGTERM."""

from edgegate_common.service import run_main
from edgegate_gateway.app import build
from edgegate_gateway.config import GatewaySettings


def main() -> None:
    run_main(GatewaySettings, build)


if __name__ == "__main__":
    main()
