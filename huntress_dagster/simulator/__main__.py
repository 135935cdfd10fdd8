"""`python -m huntress_dagster.simulator`: run the simulator standalone (also `huntress-dagster simulator`)."""

from ..cli import main

if __name__ == "__main__":
    main(["simulator", *__import__("sys").argv[1:]])
