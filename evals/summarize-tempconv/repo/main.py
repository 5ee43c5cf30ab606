import csv
import sys

from convert import c_to_f


def main(path: str) -> None:
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            print(f"{row['city']}: {c_to_f(float(row['celsius'])):.1f} F")


if __name__ == "__main__":
    main(sys.argv[1])
