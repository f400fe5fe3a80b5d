"""The change feed and its readers: every committed change numbered in commit order
(changes), read back as state (reader), applied to a view that publishes immutable
snapshots (view), kept current by a follower (follower)."""
