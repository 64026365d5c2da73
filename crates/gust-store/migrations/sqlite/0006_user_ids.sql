-- Version 6: every account has an id that is never reused, and access tokens name it, so the
-- token of a deleted user does not work for a later user who takes the same name. Accounts made
-- before this version get an id derived from their name and creation time; new accounts get a
-- random one.
ALTER TABLE users ADD COLUMN id TEXT NOT NULL DEFAULT '';
UPDATE users SET id = 'legacy-' || username || '-' || created_at;
CREATE UNIQUE INDEX users_id ON users (id);
