"""Analysis: tidy frames from the database (``frames``), agreement statistics (``metrics``), the
dashboards' tables (``disagreement``, ``compute``) and their plotly figures (``charts``). Pure
pandas; no Gradio, no model."""
