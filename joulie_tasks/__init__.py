"""joulie-tasks: the Joulie energy-aware node-profile operator as a Celery workflow."""

__version__ = "0.1.0"
