"""`python -m edgegate_taskstore`: run the taskstore service until SIGTERM."""

from edgegate_common.service import run_main
from edgegate_taskstore.app import build
from edgegate_taskstore.config import TaskstoreSettings


def main() -> None:
    run_main(TaskstoreSettings, build)


if __name__ == "__main__":
    main()
