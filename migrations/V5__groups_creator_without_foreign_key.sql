-- A group's creator stays a name, without a foreign key to users. Should the database outgrow
-- one primary (docs/scaling.md), users is distributed by name and groups becomes a reference
-- table copied to every node, and Citus does not support a foreign key from a reference table
-- to a distributed table. The key guards nothing the servers rely on: a group is created only
-- by the join of a logged-in user, whose row exists, and users are never deleted.
ALTER TABLE groups DROP CONSTRAINT groups_created_by_fkey;
