"""`python3 -m chimeraforge --version`: which package (and engine) this interpreter imports."""

import argparse
import sys

from . import __version__


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m chimeraforge",
        description="The chimeraforge Python package (the engine is the pybind11 module "
                    "chimeraforge._native). For the command-line tool, run `chimeraforge`.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--where", action="store_true",
                        help="print where the package and its native module were loaded from")
    args = parser.parse_args(argv)
    if args.version:
        print(f"chimeraforge {__version__}")
        return 0
    if args.where:
        from . import _native
        print(f"package: {__file__.rsplit('/', 1)[0]}")
        print(f"native:  {_native.__file__}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
