"""`python -m bundler ...`: the esbundle command line, where the console script is not installed."""
from bundler.cli.esbundle import main

if __name__ == "__main__":
    main()
