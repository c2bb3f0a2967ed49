"""Alembic environment: runs on the connection rrm_ui.storage.db.upgrade hands it, or on the URL."""

from alembic import context
from sqlalchemy import create_engine

from rrm_ui.storage.db import include_object
from rrm_ui.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        with create_engine(config.get_main_option("sqlalchemy.url")).begin() as conn:
            _migrate(conn)
    else:
        _migrate(connection)


def _migrate(connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


run()
