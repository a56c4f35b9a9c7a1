"""The head revision every command checks at start is the newest migration's."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from khqrpay.db import migrate


def test_the_head_revision_is_the_newest_migration() -> None:
    # A new migration must change `HEAD_REVISION` too, or every command would refuse (or accept)
    # the wrong schema.
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert scripts.get_heads() == [migrate.HEAD_REVISION]
