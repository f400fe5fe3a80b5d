"""The change feed and its readers: every committed change numbered in commit order
(changes), the changes and states it carries (states), read back as state (reader, with
dataplane_reader and service_reader, sharing rows), applied to a view that publishes
immutable snapshots (view), kept current by a follower (follower) that retries a lost
database with backoff (backoff)."""
