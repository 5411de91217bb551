"""`tradestore brain`: the research brain (the RAG document store: cli/brain_rag.py)."""

from __future__ import annotations

import typer

from tradestore.cli import brain_rag

brain_app = typer.Typer(help="AI research: documents, search, questions.", no_args_is_help=True)
brain_rag.register(brain_app)
