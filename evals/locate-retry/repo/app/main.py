import sys

from app.net.client import fetch


def main() -> None:
    print(len(fetch(sys.argv[1])), "bytes")


if __name__ == "__main__":
    main()
