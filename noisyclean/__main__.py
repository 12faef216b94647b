"""``python -m noisyclean``."""

from .cli import app

app()
