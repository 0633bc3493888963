"""`python -m edgegate_inference`: run the inference service until SIGTERM."""

from edgegate_common.service import run_main
from edgegate_inference.app import build
from edgegate_inference.config import InferenceSettings


def main() -> None:
    run_main(InferenceSettings, build)


if __name__ == "__main__":
    main()
