"""``python -m crew_aio``: the same command group as the ``crew-aio`` script."""

from crew_aio.cli import main

if __name__ == "__main__":
    main()
