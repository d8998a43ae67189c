"""`python -m watchnext ...` is the `watchnext` command."""

from watchnext.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
