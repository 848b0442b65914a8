"""`python -m edgeanom ...`: the same command line as the `edgeanom` script."""

from edgeanom.cli.main import main

if __name__ == "__main__":
    main()
