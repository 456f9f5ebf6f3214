"""warwatch: a streaming monitor for war reporting on Telegram, X, news feeds and article corpora."""

__version__ = "0.1.0"
