"""Search on PostgreSQL uses trigram indexes (issue 18; migration 0009), and an upgrade by a role that
may not create the extension goes on without them. A real PostgreSQL server; the planner is told not to
scan tables (the test tables are small) so that EXPLAIN shows whether an index can serve the search."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from rrm_ui.domain import Item
from rrm_ui.storage import Repository, make_engine, upgrade

TRGM = {"ix_items_query_trgm", "ix_judgments_reasoning_trgm", "ix_judgments_answer_trgm"}


def _indexes(engine) -> set[str]:  # noqa: ANN001
    with engine.connect() as c:
        return {r[0] for r in c.execute(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%trgm'"))}


def _fill(repo: Repository) -> dict[str, int]:
    ids = {}
    for k, word in enumerate(("zebra crossing", "quantum lattice", "plain words")):
        _, ids[word] = repo.add_item("trgm", Item(f"q{k}", f"A question about {word}?", ("one", "two")),
                                     fmt="test", source="test")  # fmt: skip
    return ids


def test_search_uses_trigram_indexes_where_the_extension_can_be_made(postgres) -> None:  # noqa: ANN001
    url = postgres.new_database("trgm_super")
    engine = make_engine(url)
    upgrade(engine)
    assert _indexes(engine) == TRGM
    repo = Repository(engine)
    ids = _fill(repo)
    assert repo.search_items("LATTICE") == {ids["quantum lattice"]}  # case-insensitive, anywhere in the text
    with engine.connect() as c:
        c.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in c.execute(text(
            "EXPLAIN SELECT id FROM items WHERE query ILIKE '%lattice%'")))  # fmt: skip
    assert "ix_items_query_trgm" in plan, plan
    engine.dispose()


def test_an_upgrade_without_the_right_to_create_extensions_goes_on_without_them(postgres) -> None:  # noqa: ANN001
    url = postgres.new_database("trgm_plain")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("DROP ROLE IF EXISTS plain_user"))
        c.execute(text("CREATE ROLE plain_user LOGIN"))
        c.execute(text("GRANT CREATE ON SCHEMA public TO plain_user"))  # tables, not extensions
    admin.dispose()
    engine = make_engine(url.replace("//rrm@", "//plain_user@"))
    upgrade(engine)  # no error: the indexes are left out
    assert _indexes(engine) == set()
    repo = Repository(engine)
    ids = _fill(repo)
    assert repo.search_items("zebra") == {ids["zebra crossing"]}
    engine.dispose()
