"""``python -m eta_cli`` runs the same CLI as the ``eta`` script."""

from eta_cli.cli import main

if __name__ == "__main__":
    main()
