import re
import sys
from collections import Counter

LINE = re.compile(r'"[A-Z]+ \S+ HTTP/[\d.]+" (\d{3}) ')


def count(lines) -> Counter:
    codes = Counter()
    for line in lines:
        match = LINE.search(line)
        if match:
            codes[match.group(1)] += 1
    return codes


def main() -> None:
    path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with open(path) as fh:
        for code, n in count(fh).most_common(top):
            print(f"{code}\t{n}")


if __name__ == "__main__":
    main()
