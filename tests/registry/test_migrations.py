"""The migrations build exactly the models, from an empty database, on both backends."""

from __future__ import annotations

import pytest

from registry.errors import DatabaseUnavailable, SchemaOutdated
from registry.store.database import (
    check_schema_current,
    current_revision,
    downgrade,
    newest_revision,
    schema_differences,
    upgrade,
)


async def test_models_and_migrations_agree(database_url):
    assert await schema_differences(database_url) == []
    await check_schema_current(database_url)


async def test_upgrade_from_empty_then_down_and_up_again(empty_database_url):
    with pytest.raises(SchemaOutdated, match=r"empty .* run `meshdns migrate`"):
        await check_schema_current(empty_database_url)

    await upgrade(empty_database_url)

    assert await current_revision(empty_database_url) == newest_revision()
    assert await schema_differences(empty_database_url) == []
    await downgrade(empty_database_url, "base")
    assert await current_revision(empty_database_url) is None
    await upgrade(empty_database_url)
    assert await schema_differences(empty_database_url) == []


async def test_a_database_behind_the_newest_migration_is_outdated(empty_database_url):
    await upgrade(empty_database_url, "0002_vips")

    with pytest.raises(SchemaOutdated) as raised:
        await check_schema_current(empty_database_url)

    message = str(raised.value)
    assert "0002_vips" in message and newest_revision() in message
    assert "meshdns migrate" in message and "\n" not in message
    # The comparison notices what the missing migration would add.
    differences = await schema_differences(empty_database_url)
    assert any(diff[0] == "add_table" and diff[1].name == "registry_state" for diff in differences)


async def test_checking_an_unreachable_database_says_so():
    with pytest.raises(DatabaseUnavailable, match="127.0.0.1:1"):
        await check_schema_current("postgresql+asyncpg://postgres@127.0.0.1:1/meshdns")
